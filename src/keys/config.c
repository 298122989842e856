/* Key provider configuration (DESIGN.md section 3): where it is found, what
 * a valid one looks like.  Each provider's JSON object is kept whole so that
 * keys_provider_open can hand it to the provider type's constructor; fields
 * this file does not know are accepted for forward compatibility. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "keys/config.h"

#define KEYS_CONFIG_SYSTEM_PATH "/etc/nbdcrypt/config.json"
#define KEYS_CONFIG_BUILTIN     "built-in default"
#define KEYS_CONFIG_MAX_BYTES   ((size_t)1024 * 1024)

struct keys_config_entry {
  const char *name;         /* borrowed from root */
  const char *type;         /* "native" or "kmip" */
  struct json_object *conf; /* borrowed from root */
};

struct keys_config {
  char *origin;
  const char *default_provider; /* borrowed from entries */
  struct json_object *root;
  struct keys_config_entry *providers;
  size_t provider_count;
  /* Set by the program, never read from the file (docs/key-providers.md). */
  bool allow_revoked;
  keys_warn_fn warn;
  void *warn_ctx;
};

void keys_config_set_allow_revoked(struct keys_config *cfg, bool allow)
{
  cfg->allow_revoked = allow;
}

bool keys_config_allow_revoked(const struct keys_config *cfg)
{
  return cfg && cfg->allow_revoked;
}

void keys_config_set_warn(struct keys_config *cfg, keys_warn_fn fn, void *ctx)
{
  cfg->warn = fn;
  cfg->warn_ctx = ctx;
}

void keys_config_warn(const struct keys_config *cfg, const char *fmt, ...)
{
  if (!cfg || !cfg->warn)
    return;
  char msg[NBDC_ERROR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  cfg->warn(cfg->warn_ctx, msg);
}

void keys_config_free(struct keys_config *cfg)
{
  if (!cfg)
    return;
  free(cfg->origin);
  free(cfg->providers);
  json_object_put(cfg->root);
  free(cfg);
}

const char *keys_config_origin(const struct keys_config *cfg)
{
  return cfg->origin;
}

const char *keys_config_default_provider(const struct keys_config *cfg)
{
  return cfg->default_provider;
}

size_t keys_config_provider_count(const struct keys_config *cfg)
{
  return cfg->provider_count;
}

const char *keys_config_provider_name(const struct keys_config *cfg, size_t i)
{
  return i < cfg->provider_count ? cfg->providers[i].name : NULL;
}

bool keys_config_find(const struct keys_config *cfg, const char *name, const char **type,
                      struct json_object **conf)
{
  for (size_t i = 0; i < cfg->provider_count; i++) {
    if (strcmp(cfg->providers[i].name, name) == 0) {
      *type = cfg->providers[i].type;
      *conf = cfg->providers[i].conf;
      return true;
    }
  }
  return false;
}

/* An absolute version of dir (which may be relative to the working directory). */
static char *config_absolute_dir(const char *dir, struct nbdc_error *err)
{
  char *abs = NULL;
  if (dir[0] == '/') {
    abs = strdup(dir);
  } else {
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
      nbdc_error_set(err, errno, "cannot get the current directory: %s", strerror(errno));
      return NULL;
    }
    if (strcmp(dir, ".") == 0)
      abs = strdup(cwd);
    else if (asprintf(&abs, "%s/%s", cwd, dir) < 0)
      abs = NULL;
  }
  if (!abs)
    nbdc_error_set(err, ENOMEM, "out of memory");
  return abs;
}

/* The directory part of path, absolute. */
static char *config_dir_of(const char *path, struct nbdc_error *err)
{
  const char *slash = strrchr(path, '/');
  if (!slash)
    return config_absolute_dir(".", err);
  if (slash == path)
    return config_absolute_dir("/", err);
  char *dir = strndup(path, (size_t)(slash - path));
  if (!dir) {
    nbdc_error_set(err, ENOMEM, "out of memory");
    return NULL;
  }
  char *abs = config_absolute_dir(dir, err);
  free(dir);
  return abs;
}

/* A native provider's keystore: a string, made absolute against base_dir. */
static int config_check_native(const char *origin, const char *name, struct json_object *conf,
                               const char *base_dir, struct nbdc_error *err)
{
  struct json_object *keystore;
  if (!json_object_object_get_ex(conf, "keystore", &keystore))
    return nbdc_error_set(err, EINVAL,
                          "%s: field providers.%s.keystore is missing (a native provider needs "
                          "the path of its keystore file)",
                          origin, name);
  if (!json_object_is_type(keystore, json_type_string))
    return nbdc_error_set(err, EINVAL, "%s: field providers.%s.keystore is not a string", origin,
                          name);
  const char *path = json_object_get_string(keystore);
  if (path[0] == '\0')
    return nbdc_error_set(err, EINVAL, "%s: field providers.%s.keystore is empty", origin, name);
  if (path[0] == '/')
    return 0;

  char *abs;
  if (asprintf(&abs, "%s/%s", base_dir, path) < 0)
    return nbdc_error_set(err, ENOMEM, "out of memory");
  struct json_object *str = json_object_new_string(abs);
  free(abs);
  if (!str || json_object_object_add(conf, "keystore", str) != 0) {
    json_object_put(str);
    return nbdc_error_set(err, ENOMEM, "out of memory");
  }
  return 0;
}

static int config_check_provider(const char *origin, const char *name, struct json_object *conf,
                                 const char *base_dir, const char **type_out,
                                 struct nbdc_error *err)
{
  if (name[0] == '\0')
    return nbdc_error_set(err, EINVAL, "%s: field providers has a provider with an empty name",
                          origin);
  if (!json_object_is_type(conf, json_type_object))
    return nbdc_error_set(err, EINVAL, "%s: field providers.%s is not an object", origin, name);

  struct json_object *type;
  if (!json_object_object_get_ex(conf, "type", &type))
    return nbdc_error_set(err, EINVAL,
                          "%s: field providers.%s.type is missing (expected \"native\" or "
                          "\"kmip\")",
                          origin, name);
  if (!json_object_is_type(type, json_type_string))
    return nbdc_error_set(err, EINVAL, "%s: field providers.%s.type is not a string", origin, name);
  const char *type_name = json_object_get_string(type);
  if (strcmp(type_name, "native") == 0) {
    *type_out = "native";
    return config_check_native(origin, name, conf, base_dir, err);
  }
  if (strcmp(type_name, "kmip") == 0) {
    /* Its own fields are validated by keys_kmip_open, which knows them. */
    *type_out = "kmip";
    return 0;
  }
  return nbdc_error_set(err, EINVAL,
                        "%s: field providers.%s.type: unknown provider type \"%s\" (expected "
                        "\"native\" or \"kmip\")",
                        origin, name, type_name);
}

/* Validate root (taking ownership of it) and build the configuration.
 * Relative keystore paths are resolved against base_dir. */
static int config_build(struct json_object *root, const char *origin, const char *base_dir,
                        struct keys_config **out, struct nbdc_error *err)
{
  int r;
  struct keys_config *cfg = calloc(1, sizeof *cfg);
  if (!cfg) {
    json_object_put(root);
    return nbdc_error_set(err, ENOMEM, "out of memory");
  }
  cfg->root = root;
  cfg->origin = strdup(origin);
  if (!cfg->origin) {
    r = nbdc_error_set(err, ENOMEM, "out of memory");
    goto fail;
  }

  if (!json_object_is_type(root, json_type_object)) {
    r = nbdc_error_set(err, EINVAL, "%s: the configuration is not a JSON object", origin);
    goto fail;
  }
  struct json_object *providers;
  if (!json_object_object_get_ex(root, "providers", &providers)) {
    r = nbdc_error_set(err, EINVAL, "%s: field providers is missing", origin);
    goto fail;
  }
  if (!json_object_is_type(providers, json_type_object)) {
    r = nbdc_error_set(err, EINVAL, "%s: field providers is not an object", origin);
    goto fail;
  }
  size_t count = (size_t)json_object_object_length(providers);
  if (count == 0) {
    r = nbdc_error_set(err, EINVAL, "%s: field providers is empty (no key provider configured)",
                       origin);
    goto fail;
  }
  cfg->providers = calloc(count, sizeof *cfg->providers);
  if (!cfg->providers) {
    r = nbdc_error_set(err, ENOMEM, "out of memory");
    goto fail;
  }
  json_object_object_foreach(providers, name, conf)
  {
    struct keys_config_entry *entry = &cfg->providers[cfg->provider_count];
    r = config_check_provider(origin, name, conf, base_dir, &entry->type, err);
    if (r < 0)
      goto fail;
    entry->name = name;
    entry->conf = conf;
    cfg->provider_count++;
  }

  struct json_object *def;
  if (json_object_object_get_ex(root, "default_provider", &def)) {
    if (!json_object_is_type(def, json_type_string)) {
      r = nbdc_error_set(err, EINVAL, "%s: field default_provider is not a string", origin);
      goto fail;
    }
    const char *def_name = json_object_get_string(def);
    for (size_t i = 0; i < cfg->provider_count; i++)
      if (strcmp(cfg->providers[i].name, def_name) == 0)
        cfg->default_provider = cfg->providers[i].name;
    if (!cfg->default_provider) {
      r = nbdc_error_set(err, EINVAL, "%s: field default_provider: no provider \"%s\" in providers",
                         origin, def_name);
      goto fail;
    }
  } else if (cfg->provider_count == 1) {
    cfg->default_provider = cfg->providers[0].name;
  } else {
    r = nbdc_error_set(err, EINVAL,
                       "%s: no default_provider and %zu providers (set default_provider to one "
                       "of them)",
                       origin, cfg->provider_count);
    goto fail;
  }

  *out = cfg;
  return 0;

fail:
  keys_config_free(cfg);
  return r;
}

static int config_parse_text(const char *text, size_t len, const char *origin, const char *base_dir,
                             struct keys_config **out, struct nbdc_error *err)
{
  if (len > KEYS_CONFIG_MAX_BYTES)
    return nbdc_error_set(err, EFBIG, "%s: the configuration is larger than %zu bytes", origin,
                          KEYS_CONFIG_MAX_BYTES);
  struct json_tokener *tok = json_tokener_new();
  if (!tok)
    return nbdc_error_set(err, ENOMEM, "out of memory");
  struct json_object *root = json_tokener_parse_ex(tok, text, (int)len);
  enum json_tokener_error jerr = json_tokener_get_error(tok);
  size_t end = json_tokener_get_parse_end(tok);
  json_tokener_free(tok);

  if (root && jerr == json_tokener_success) {
    while (end < len && strchr(" \t\r\n", text[end]))
      end++;
    if (end < len) {
      json_object_put(root);
      root = NULL;
      jerr = json_tokener_error_parse_unexpected;
    }
  } else if (jerr == json_tokener_continue) {
    jerr = json_tokener_error_parse_eof;
  }
  if (!root || jerr != json_tokener_success) {
    json_object_put(root);
    int line = 1;
    for (size_t i = 0; i < end && i < len; i++)
      line += text[i] == '\n';
    return nbdc_error_set(err, EINVAL, "%s: not valid JSON (line %d: %s)", origin, line,
                          json_tokener_error_desc(jerr));
  }
  return config_build(root, origin, base_dir, out, err);
}

int keys_config_parse(const char *json_text, const char *origin, struct keys_config **out,
                      struct nbdc_error *err)
{
  struct nbdc_error local_err = {0};
  if (!err)
    err = &local_err;
  if (!json_text || !out)
    return nbdc_error_set(err, EINVAL, "keys_config_parse: no text");
  if (!origin)
    origin = "configuration";
  char *base_dir = config_dir_of(origin, err);
  if (!base_dir)
    return -err->code;
  int r = config_parse_text(json_text, strlen(json_text), origin, base_dir, out, err);
  free(base_dir);
  return r;
}

/* The configuration decides which servers and keystores are trusted with
 * keys: like sudo with sudoers, refuse one that someone other than its owner
 * (this user or root) could change. */
static int config_check_file(int fd, const char *path, const char *how, struct nbdc_error *err)
{
  struct stat st;
  if (fstat(fd, &st) < 0)
    return nbdc_error_set(err, errno, "cannot examine configuration file %s%s: %s", path, how,
                          strerror(errno));
  if (S_ISDIR(st.st_mode))
    return nbdc_error_set(err, EISDIR,
                          "configuration file %s%s is a directory; give the JSON file in it "
                          "(e.g. %s/config.json)",
                          path, how, path);
  if (st.st_mode & 022)
    return nbdc_error_set(err, EPERM,
                          "configuration file %s%s has mode %04o: group or others can change it "
                          "(and with it which keys are trusted); refusing it (fix with: chmod "
                          "go-w %s)",
                          path, how, (unsigned)(st.st_mode & 07777), path);
  if (st.st_uid != 0 && st.st_uid != geteuid())
    return nbdc_error_set(err, EPERM,
                          "configuration file %s%s is owned by uid %u, neither root nor this user "
                          "(uid %u); refusing it",
                          path, how, (unsigned)st.st_uid, (unsigned)geteuid());
  return 0;
}

static int config_load_file(const char *path, const char *how, struct keys_config **out,
                            struct nbdc_error *err)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT)
      return nbdc_error_set(err, e, "configuration file %s%s does not exist", path, how);
    return nbdc_error_set(err, e, "cannot open configuration file %s%s: %s", path, how,
                          strerror(e));
  }
  int r = config_check_file(fd, path, how, err);
  FILE *f = r < 0 ? NULL : fdopen(fd, "r");
  if (!f) {
    if (r == 0)
      r = nbdc_error_set(err, errno, "cannot read configuration file %s%s: %s", path, how,
                         strerror(errno));
    close(fd);
    return r;
  }
  char *text = malloc(KEYS_CONFIG_MAX_BYTES + 1);
  if (!text) {
    fclose(f);
    return nbdc_error_set(err, ENOMEM, "out of memory");
  }
  size_t len = fread(text, 1, KEYS_CONFIG_MAX_BYTES + 1, f);
  int read_error = ferror(f);
  fclose(f);
  if (read_error) {
    r = nbdc_error_set(err, EIO, "cannot read configuration file %s%s", path, how);
  } else if (memchr(text, '\0', len)) {
    r = nbdc_error_set(err, EINVAL, "%s: not valid JSON (contains a NUL byte)", path);
  } else {
    char *base_dir = config_dir_of(path, err);
    r = base_dir ? config_parse_text(text, len, path, base_dir, out, err) : -err->code;
    free(base_dir);
  }
  free(text);
  return r;
}

/* $XDG_DATA_HOME/nbdcrypt/keystore.json, else ~/.local/share/nbdcrypt/keystore.json. */
static char *config_default_keystore(struct nbdc_error *err)
{
  char *path = NULL;
  const char *xdg = getenv("XDG_DATA_HOME");
  const char *home = getenv("HOME");
  int n;
  if (xdg && xdg[0] == '/') {
    n = asprintf(&path, "%s/nbdcrypt/keystore.json", xdg);
  } else if (home && home[0] == '/') {
    n = asprintf(&path, "%s/.local/share/nbdcrypt/keystore.json", home);
  } else {
    struct passwd pw, *found = NULL;
    char buf[4096];
    if (getpwuid_r(geteuid(), &pw, buf, sizeof buf, &found) != 0 || !found || !pw.pw_dir ||
        pw.pw_dir[0] != '/') {
      nbdc_error_set(err, ENOENT,
                     "no home directory for the default keystore (set HOME or XDG_DATA_HOME, "
                     "or configure a keystore)");
      return NULL;
    }
    n = asprintf(&path, "%s/.local/share/nbdcrypt/keystore.json", pw.pw_dir);
  }
  if (n < 0) {
    nbdc_error_set(err, ENOMEM, "out of memory");
    return NULL;
  }
  return path;
}

static int config_builtin(struct keys_config **out, struct nbdc_error *err)
{
  char *keystore = config_default_keystore(err);
  if (!keystore)
    return -err->code;
  struct json_object *root = json_object_new_object();
  struct json_object *providers = json_object_new_object();
  struct json_object *local = json_object_new_object();
  struct json_object *type = json_object_new_string("native");
  struct json_object *path = json_object_new_string(keystore);
  struct json_object *def = json_object_new_string("local");
  free(keystore);
  if (!root || !providers || !local || !type || !path || !def) {
    json_object_put(root);
    json_object_put(providers);
    json_object_put(local);
    json_object_put(type);
    json_object_put(path);
    json_object_put(def);
    return nbdc_error_set(err, ENOMEM, "out of memory");
  }
  json_object_object_add(local, "type", type);
  json_object_object_add(local, "keystore", path);
  json_object_object_add(providers, "local", local);
  json_object_object_add(root, "providers", providers);
  json_object_object_add(root, "default_provider", def);
  return config_build(root, KEYS_CONFIG_BUILTIN, "/", out, err);
}

int keys_config_load(const char *path, struct keys_config **out, struct nbdc_error *err)
{
  struct nbdc_error local_err = {0};
  if (!err)
    err = &local_err;
  if (!out)
    return nbdc_error_set(err, EINVAL, "keys_config_load: no output");
  if (path)
    return config_load_file(path, "", out, err);

  const char *env = getenv("NBDCRYPT_CONFIG");
  if (env && env[0] != '\0')
    return config_load_file(env, " (from $NBDCRYPT_CONFIG)", out, err);

  struct stat st;
  if (stat(KEYS_CONFIG_SYSTEM_PATH, &st) == 0)
    return config_load_file(KEYS_CONFIG_SYSTEM_PATH, "", out, err);
  if (errno != ENOENT && errno != ENOTDIR)
    return nbdc_error_set(err, errno, "cannot examine configuration file %s: %s",
                          KEYS_CONFIG_SYSTEM_PATH, strerror(errno));
  return config_builtin(out, err);
}

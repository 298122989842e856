/* nbdkit-nbdcrypt-filter: image locks, one writer per disk (docs/decisions.md).
 *
 * The filter cannot see how the plugin opens its disk, but it sees the
 * plugin's keys: every file= (the split plugin takes several) names an image,
 * and dir= a directory of images, one per export name.  On those files it
 * takes the image lock of a server (qemu's layout, src/blockdev/imagelock.c),
 * so that nbdcrypt recrypt/decrypt/encrypt/format/enroll, qemu-img and
 * qemu-io writers and a second server are refused while the disk is served,
 * and the server refuses to start on an image one of them holds.
 *
 * The locks sit on descriptors of our own, opened read-only (read locks need
 * no more); OFD locks belong to the open file description, so they survive
 * nbdkit's fork into the background and go only when .unload closes them.
 * Paths are made absolute at .config: nbdkit changes to / when it forks.
 * Other plugins (nbd, memory, ...) name no local image: the server they
 * reach locks, or there is nothing to lock.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nbdcrypt.h"
#include "nbdcrypt/blockdev.h"

struct held_lock {
  char *path; /* absolute, as locked */
  struct bdev_image_lock *lock;
  struct held_lock *next;
};

static bool lock_enabled = true; /* nbdcrypt-lock */
static bool lock_readonly;       /* nbdcrypt-lock=readonly: file= as a read-only server */
static char **files;             /* every file= value, absolute where it resolves */
static size_t n_files;
static char *dir; /* the last dir= value, absolute */

static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static struct held_lock *held; /* under held_mu */

/* realpath when the path resolves (it must exist), else the value as given:
 * the plugin reports a missing file itself. */
static char *absolute(const char *value)
{
  char *abs = realpath(value, NULL);
  return abs ? abs : strdup(value);
}

int nbdcrypt_lock_config_key(const char *key, const char *value)
{
  if (strcmp(key, "nbdcrypt-lock") == 0) {
    if (strcmp(value, "readonly") == 0) {
      lock_enabled = lock_readonly = true;
      return 1;
    }
    int b = nbdkit_parse_bool(value);
    if (b == -1)
      return -1;
    lock_enabled = b;
    lock_readonly = false;
    return 1;
  }
  if (strcmp(key, "file") == 0) {
    char **grown = realloc(files, (n_files + 1) * sizeof *files);
    if (!grown) {
      nbdkit_error("nbdcrypt: out of memory for file=%s", value);
      return -1;
    }
    files = grown;
    if (!(files[n_files] = absolute(value))) {
      nbdkit_error("nbdcrypt: out of memory for file=%s", value);
      return -1;
    }
    n_files++;
    return 0; /* the plugin's key: passed on */
  }
  if (strcmp(key, "dir") == 0) {
    free(dir);
    if (!(dir = absolute(value))) {
      nbdkit_error("nbdcrypt: out of memory for dir=%s", value);
      return -1;
    }
    return 0;
  }
  return 0;
}

/* Is path an image we can lock: a regular file or a block device?  Anything
 * else (missing, a directory, a FIFO) is left to the plugin. */
static bool lockable(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0 && (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode));
}

/* Lock path as a server unless it is held already.  Caller holds held_mu.
 * 0, or -1 after nbdkit_error. */
static int lock_one(const char *path, bool readonly)
{
  for (struct held_lock *h = held; h; h = h->next)
    if (strcmp(h->path, path) == 0)
      return 0;
  struct held_lock *h = calloc(1, sizeof *h);
  if (!h || !(h->path = strdup(path))) {
    free(h);
    nbdkit_error("nbdcrypt: out of memory locking %s", path);
    return -1;
  }
  struct nbdc_error err = {0};
  if (bdev_image_lock_path(path, readonly ? BDEV_LOCK_SERVER_RO : BDEV_LOCK_SERVER, &h->lock,
                           &err) < 0) {
    nbdkit_error("nbdcrypt: cannot serve %s: %s", path, err.msg);
    free(h->path);
    free(h);
    return -1;
  }
  nbdkit_debug("nbdcrypt: image lock held on %s", path);
  h->next = held;
  held = h;
  return 0;
}

/* Whether the server is read-only is not known yet here (nbdkit tells
 * filters only in .open): lock as a read-write server unless
 * nbdcrypt-lock=readonly said so (nbdcrypt serve --readonly does). */
int nbdcrypt_lock_ready(void)
{
  const char *header = nbdcrypt_header_path();
  /* One header is one disk: the exports of dir= are as many disks. */
  if (header && dir) {
    nbdkit_error("nbdcrypt-header=%s cannot be used with dir=%s: a detached header belongs to "
                 "one disk, and every export of the directory is another",
                 header, dir);
    return -1;
  }
  struct stat hs, fs;
  for (size_t i = 0; header && i < n_files; i++) {
    if (stat(header, &hs) == 0 && stat(files[i], &fs) == 0 && hs.st_dev == fs.st_dev &&
        hs.st_ino == fs.st_ino) {
      nbdkit_error("nbdcrypt-header=%s is the plugin's disk file=%s itself: a detached header "
                   "is a file of its own, apart from the data",
                   header, files[i]);
      return -1;
    }
  }
  if (!lock_enabled)
    return 0;
  pthread_mutex_lock(&held_mu);
  int r = 0;
  /* The detached header first: as the data, a server's own, so that two
   * servers cannot use one header (and its disk's key changes, which take
   * no image lock, still can). */
  if (header && lockable(header))
    r = lock_one(header, lock_readonly);
  for (size_t i = 0; i < n_files && r == 0; i++)
    if (lockable(files[i]))
      r = lock_one(files[i], lock_readonly);
  pthread_mutex_unlock(&held_mu);
  return r;
}

int nbdcrypt_lock_export(const char *exportname, bool readonly)
{
  if (!lock_enabled || !dir || !exportname)
    return 0;
  /* Names the plugin would not map to a file of dir (file dir= refuses them). */
  if (!*exportname || strchr(exportname, '/') || strcmp(exportname, ".") == 0 ||
      strcmp(exportname, "..") == 0)
    return 0;
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/%s", dir, exportname) >= (int)sizeof path)
    return 0;
  if (!lockable(path))
    return 0;
  pthread_mutex_lock(&held_mu);
  int r = lock_one(path, readonly);
  pthread_mutex_unlock(&held_mu);
  return r;
}

void nbdcrypt_lock_free(void)
{
  pthread_mutex_lock(&held_mu);
  while (held) {
    struct held_lock *h = held;
    held = h->next;
    bdev_image_unlock(h->lock);
    free(h->path);
    free(h);
  }
  pthread_mutex_unlock(&held_mu);
  for (size_t i = 0; i < n_files; i++)
    free(files[i]);
  free(files);
  files = NULL;
  n_files = 0;
  free(dir);
  dir = NULL;
}

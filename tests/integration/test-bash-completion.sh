#!/usr/bin/env bash
# The installed bash completion completes nbdcrypt's subcommands (those
# `nbdcrypt --help` lists), kek's actions, each command's options (those its
# --help lists, read from the nbdcrypt on PATH) and option values:
# bash sources the file and calls its completion function with COMP_WORDS as
# readline would set them, for `nbdcrypt re<TAB>` and others.
# nbdcrypt-test: sanitize
. "$(dirname "$0")/lib.sh"
comp=$NBDCRYPT_SRCDIR/dist/bash-completion/nbdcrypt
[ -f "$comp" ] || fail "no $comp"
mkdir "$T/files" && touch "$T/files/disk.img" "$T/files/disk2.img" "$T/files/other.raw"
# Options come from `nbdcrypt COMMAND --help` of the nbdcrypt on PATH.
mkdir "$T/bin" && ln -s "$NBDCRYPT" "$T/bin/nbdcrypt"
export PATH=$T/bin:$PATH

# complete WORDS...: the sorted completions of the last word (may be '').
complete_words() {
  bash --norc --noprofile -c '
    . "$1"; shift
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
    COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    _nbdcrypt nbdcrypt "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
    printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " " | sed "s/ $//"
  ' bash "$comp" "$@"
}
# expect "WORDS" "COMPLETIONS"
expect() {
  local got
  read -r -a words <<<"$1"
  [[ "$1" == *" " ]] && words+=("")
  got=$(cd "$T/files" && complete_words "${words[@]}") || fail "completion of '$1' failed"
  [ "$got" = "$2" ] || fail "'$1<TAB>' completes to '$got', expected '$2'"
}

# complete -p: the file registers a completion for nbdcrypt.
bash --norc --noprofile -c ". '$comp'; complete -p nbdcrypt" | grep -q -- '-F _nbdcrypt nbdcrypt$' ||
  fail "sourcing the completion registers no 'complete -F _nbdcrypt nbdcrypt'"

expect "nbdcrypt re" "recrypt rekey"
expect "nbdcrypt " "check decrypt encrypt enroll format info kek recrypt rekey serve"
expect "nbdcrypt --config cfg.json s" "serve"
expect "nbdcrypt --" "--batch-mode --config --help --version --yes"
expect "nbdcrypt --batch-mode f" "format"
expect "nbdcrypt kek " "create destroy list revoke"
expect "nbdcrypt kek d" "destroy"
expect "nbdcrypt kek destroy --f" "--force"
expect "nbdcrypt kek destroy --b" "--batch-mode"
expect "nbdcrypt format disk.img --j" "--json"
expect "nbdcrypt kek list --" "--help --json --prefix --provider"
expect "nbdcrypt serve disk.img --s" "--socket"
expect "nbdcrypt serve disk.img --" \
  "--bind --dry-run --foreground --header --help --json --pidfile --port --readonly --recrypt --socket"
expect "nbdcrypt format disk.img --sector-size " "4096 512"
expect "nbdcrypt info --d" "--dump-volume-key"
expect "nbdcrypt check --" "--allow-revoked --header --help --json"
expect "nbdcrypt serve disk.img --header o" "other.raw"
expect "nbdcrypt kek revoke --" "--compromised --help --provider"
expect "nbdcrypt recrypt disk.img --d" "--drop-passphrase-keyslots"
# TARGET and file-valued options complete file names; --kek values are typed.
expect "nbdcrypt check dis" "disk.img disk2.img"
expect "nbdcrypt encrypt x --header o" "other.raw"
expect "nbdcrypt format disk.img --kek " ""
# After `serve ... --` the words are nbdkit's: nothing of ours.
expect "nbdcrypt serve disk.img -- --th" ""

# The commands are those `nbdcrypt --help` lists.
listed=$("$NBDCRYPT" --help | sed -n '/^Commands:/,/^$/p' | awk 'NF > 1 {print $1}' | sort | tr '\n' ' ')
expect "nbdcrypt " "${listed% }"

# Every option a command's --help lists is offered for that command.
for cmd in format info check rekey enroll recrypt encrypt decrypt serve; do
  offered=" $(cd "$T/files" && complete_words nbdcrypt "$cmd" --) "
  # Options in the usage lines ([--x], (--x | --y)) and the option list (  --x).
  for opt in $("$NBDCRYPT" "$cmd" --help | grep -Eo -- '(^ +|[[(]|\| )--[a-z][a-z-]+' |
    grep -Eo -- '--[a-z-]+' | sort -u); do
    [[ "$offered" == *" $opt "* ]] || fail "nbdcrypt $cmd --help lists $opt, the completion does not offer it"
  done
done
pass "completions of subcommands, actions, options and values"

#!/usr/bin/env bash
# Writes the example's secrets, random and new, into secrets/ (ignored by git):
#   secrets/mariadb.env         database name, user and passwords
#   secrets/wordpress-keys.env  WordPress's eight authentication keys and salts
# Existing files are kept, so running it again changes nothing: new keys would log
# every user out, and a new database password would not match the existing database.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p secrets
umask 077

rand() { openssl rand -base64 "$1" | tr -d '\n/+='; }

if [ ! -s secrets/mariadb.env ]; then
  cat >secrets/mariadb.env <<ENV
MARIADB_DATABASE=wordpress
MARIADB_USER=wordpress
MARIADB_PASSWORD=$(rand 24)
MARIADB_ROOT_PASSWORD=$(rand 24)
ENV
  echo "wrote secrets/mariadb.env"
fi

if [ ! -s secrets/wordpress-keys.env ]; then
  for k in AUTH_KEY SECURE_AUTH_KEY LOGGED_IN_KEY NONCE_KEY AUTH_SALT SECURE_AUTH_SALT LOGGED_IN_SALT NONCE_SALT; do
    printf 'WORDPRESS_%s=%s\n' "$k" "$(rand 48)"
  done >secrets/wordpress-keys.env
  echo "wrote secrets/wordpress-keys.env"
fi

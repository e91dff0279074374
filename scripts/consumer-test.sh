#!/usr/bin/env bash
# The consumer test: what `npm install gllm-web` gives a user. Packs the npm package, makes
# a fresh project in a temporary directory outside the crate, installs the tarball, Vite,
# webpack and TypeScript from npm, writes one module per example of the package README
# (tests/consumer/extract.mjs), type-checks them and tests/consumer/check-types.ts with tsc,
# builds the page with Vite and with webpack (no config for either), serves each build with
# the models, runs the page once more from the Vite dev server, and checks in headless
# Chromium what each example printed (tests/consumer/check.mjs).
#   bash scripts/consumer-test.sh          (GLLM_SKIP_WASM_BUILD=1 reuses pkg/)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
PORT=${GLLM_CONSUMER_PORT:-8790}
tarball=$(bash scripts/pack.sh | tail -1)
echo "consumer: packed $tarball ($(du -h "$tarball" | cut -f1))"
source scripts/serve.sh
tmp=$(mktemp -d /tmp/gllm-consumer.XXXXXX)
trap 'kill "${SERVERS[@]}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
cd "$tmp"
echo '{ "name": "gllm-consumer", "private": true, "type": "module" }' > package.json
npm install --no-audit --no-fund --silent "$tarball" vite@8.3.8 typescript@7.0.2 webpack@5.112.2 webpack-cli@7.3.1
node "$repo/tests/consumer/extract.mjs" node_modules/gllm-web/README.md .
# The Node examples (run by scripts/node-test.sh) are type-checked here with the others.
node "$repo/tests/consumer/extract.mjs" --node node_modules/gllm-web/README.md node-examples
# Types: the README examples type-check as JS against the package's declarations, and
# tests/consumer/check-types.ts (options, results, worker mode, @ts-expect-error misuses).
cp "$repo/tests/consumer/check-types.ts" .
examples=$(cd src && ls *.js | grep -v '^main\.js$' | sed 's|^|"src/|; s|$|"|' | paste -sd, -)
cat > tsconfig.json <<JSON
{ "compilerOptions": { "target": "es2022", "module": "esnext", "moduleResolution": "bundler", "lib": ["es2022", "dom"],
    "allowJs": true, "checkJs": true, "noEmit": true, "strict": true, "noImplicitAny": false },
  "include": [$examples, "node-examples/*.mjs", "check-types.ts"] }
JSON
npx tsc -p .
echo "consumer: README examples and check-types.ts type-check against the package's .d.ts"
npx vite build --logLevel warn
ls dist/assets | grep -q '\.wasm$' || { echo "consumer: vite did not emit the .wasm asset" >&2; exit 1; }
ln -s "$repo/models" dist/models
# The same sources through webpack 5, with no config file either.
npx webpack --mode production --entry ./src/main.js -o dist-webpack >webpack.log 2>&1 || { cat webpack.log >&2; exit 1; }
ls dist-webpack | grep -q '\.wasm$' || { echo "consumer: webpack did not emit the .wasm asset" >&2; exit 1; }
sed 's|<script type="module" src="/src/main.js"></script>|<script src="main.js"></script>|' index.html > dist-webpack/index.html
ln -s "$repo/models" dist-webpack/models
cd "$repo"
serve "$tmp/dist" "$PORT"
echo "consumer: the Vite build"
node tests/consumer/check.mjs "http://127.0.0.1:$PORT/"
serve "$tmp/dist-webpack" "$((PORT + 1))"
echo "consumer: the webpack build"
node tests/consumer/check.mjs "http://127.0.0.1:$((PORT + 1))/"
# The Vite dev server (no build, dependency pre-bundling, and a single-page-app fallback that
# answers missing files such as an absent manifest with index.html and status 200).
mkdir -p "$tmp/public" && ln -s "$repo/models" "$tmp/public/models"
(cd "$tmp" && NO_COLOR=1 exec ./node_modules/.bin/vite --host 127.0.0.1 --port "$((PORT + 2))" --strictPort >vite-dev.log 2>&1) &
SERVERS+=("$!")
# Wait for the server to answer over HTTP (its log may be coloured, so it is not grepped).
dev_up() { node -e 'fetch(process.argv[1]).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "http://127.0.0.1:$((PORT + 2))/"; }
for _ in $(seq 120); do dev_up && break; sleep 0.25; done
dev_up || { echo "consumer: the Vite dev server did not answer" >&2; cat "$tmp/vite-dev.log" >&2; exit 1; }
echo "consumer: the Vite dev server"
node tests/consumer/check.mjs "http://127.0.0.1:$((PORT + 2))/"

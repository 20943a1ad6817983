#!/usr/bin/env node
// A partner system's consumer of its Interchange inbox, written as a CPS or local-authority developer would:
//   - loads the contract the exchange exported for it (`interchange contract export RECIPIENT --out DIR`),
//   - consumes the inbox with manual acks,
//   - validates every delivery against the view schema its `x-dataschema` header names (ajv, draft 2020-12),
//   - drops duplicates by `message_id` (delivery is at least once),
//   - acknowledges every correction and retraction notice on the `interchange.receipts` exchange,
//   - prints its counts as one JSON line and exits 1 when any delivery was invalid.
//
// node partner.js --url amqp://USER:PASS@HOST:5672/VHOST --recipient ID --contract DIR/ID [--idle-ms 1500]
//                 [--seen FILE]
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const amqp = require("amqplib");
const Ajv2020 = require("ajv/dist/2020").default;
const addFormats = require("ajv-formats").default;

const INBOX = "interchange.inbox";
const RECEIPTS = "interchange.receipts";

function options(argv) {
  const opts = { idleMs: 1500 };
  for (let i = 0; i < argv.length; i += 2) {
    const [key, value] = [argv[i], argv[i + 1]];
    if (key === "--url") opts.url = value;
    else if (key === "--recipient") opts.recipient = value;
    else if (key === "--contract") opts.contract = value;
    else if (key === "--idle-ms") opts.idleMs = Number(value);
    else if (key === "--seen") opts.seen = value;
    else throw new Error(`unknown option ${key}`);
  }
  for (const required of ["url", "recipient", "contract"]) {
    if (!opts[required]) throw new Error(`--${required} is required`);
  }
  return opts;
}

// Every schema under CONTRACT/schemas, compiled once and looked up by its $id.
function loadContract(folder) {
  const ajv = new Ajv2020({ allErrors: true }); // ajv's default strict mode: unknown keywords are errors
  addFormats(ajv);
  const files = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith(".json")) files.push(full);
    }
  };
  walk(path.join(folder, "schemas"));
  for (const file of files) ajv.addSchema(JSON.parse(fs.readFileSync(file, "utf8")));
  return ajv;
}

// Message ids already processed; kept in a file when --seen is given, so a restart still drops copies.
class Seen {
  constructor(file) {
    this.file = file;
    this.ids = new Set(file && fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter(Boolean) : []);
  }
  add(id) {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    if (this.file) fs.appendFileSync(this.file, id + "\n");
    return true;
  }
}

function header(msg, name) {
  const value = (msg.properties.headers || {})[name];
  return Buffer.isBuffer(value) ? value.toString("utf8") : value;
}

// The delivery's body as its schema sees it: the parsed JSON object, or the rendered text (CSV).
function payload(msg) {
  const type = (msg.properties.contentType || "application/json").split(";")[0].trim();
  const text = msg.content.toString("utf8");
  return type.endsWith("json") ? JSON.parse(text) : text;
}

async function main() {
  const opts = options(process.argv.slice(2));
  const ajv = loadContract(opts.contract);
  const seen = new Seen(opts.seen);
  const counts = {
    recipient: opts.recipient,
    received: 0,
    valid: 0,
    invalid: 0,
    duplicates: 0,
    corrections: 0,
    retractions: 0,
    receipts: 0,
    schemas: {},
  };
  const problems = [];

  const connection = await amqp.connect(opts.url);
  const inbox = await connection.createChannel();
  const receipts = await connection.createConfirmChannel();
  await inbox.prefetch(50);

  let last = Date.now();
  const handle = async (msg) => {
    last = Date.now();
    counts.received += 1;
    const id = msg.properties.messageId;
    if (!seen.add(id)) {
      counts.duplicates += 1; // the same record again (a redelivery): already stored, just ack
      inbox.ack(msg);
      return;
    }
    const schemaId = header(msg, "x-dataschema");
    const validate = schemaId && ajv.getSchema(schemaId);
    let body;
    try {
      body = payload(msg);
    } catch (err) {
      body = undefined;
    }
    const ok =
      Boolean(validate) &&
      body !== undefined &&
      validate(body) &&
      (typeof body !== "object" || body.dataschema === undefined || body.dataschema === schemaId);
    counts.schemas[schemaId] = (counts.schemas[schemaId] || 0) + 1;
    if (!ok) {
      counts.invalid += 1;
      problems.push({ message_id: id, schema: schemaId, errors: validate ? validate.errors : "no such schema" });
      inbox.nack(msg, false, false); // a real partner refuses what breaks its contract (and alerts)
      return;
    }
    counts.valid += 1;
    // ... store the delivery here, then acknowledge corrections and notices, then ack the message ...
    const notice = header(msg, "x-notice") === "retraction";
    const correction = !notice && header(msg, "x-supersedes-kind") !== undefined;
    if (notice) counts.retractions += 1;
    if (correction) counts.corrections += 1;
    if (notice || correction) {
      const receipt = {
        message_id: id,
        recipient: opts.recipient,
        supersedes: header(msg, "x-supersedes") ?? null,
        received_at: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      };
      receipts.publish(RECEIPTS, "", Buffer.from(JSON.stringify(receipt)), {
        contentType: "application/json",
        deliveryMode: 2,
        messageId: `receipt-${id}`,
      });
      await receipts.waitForConfirms();
      counts.receipts += 1;
    }
    inbox.ack(msg);
  };

  let chain = Promise.resolve();
  await inbox.consume(INBOX, (msg) => {
    if (msg) chain = chain.then(() => handle(msg));
  });
  while (Date.now() - last < opts.idleMs) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await chain;
  await connection.close();
  for (const problem of problems.slice(0, 5)) console.error(JSON.stringify(problem));
  console.log(JSON.stringify(counts));
  process.exitCode = counts.invalid ? 1 : 0;
}

main().catch((err) => {
  console.error(`partner: ${err.message}`);
  process.exitCode = 2;
});

// Offline validation of Kubernetes manifests against the API's schemas.
//
//   node k8s_validate.mjs --modules DIR FILE.json
//
// FILE.json: a JSON array of {"name": "...", "doc": {...}} (the rendered
// documents; tests/helm/helmlib.py converts Helm's YAML). DIR: the
// node_modules that scripts/fetch-k8s-tools.sh installs (.tools/node/
// node_modules).
//
// Each document is checked against the schema of its apiVersion and kind:
//   - built-in kinds with kubernetes-models (the Kubernetes OpenAPI schemas,
//     compiled to validators: types, required fields, enums, formats such as
//     quantities);
//   - monitoring.coreos.com kinds (ServiceMonitor, PrometheusRule, ...) with
//     @kubernetes-models/prometheus-operator (the operator's CRD schemas);
//   - any other apiVersion/kind fails: nothing goes unchecked.
// Then, as `kubectl --validate=strict` or kubeconform -strict would, every
// field must be one the schema defines: the OpenAPI schemas do not forbid
// unknown properties, so a misspelt field (e.g. readOnlyRootFilesytem) would
// pass them and be silently dropped by the API server. The compiled validators
// read exactly the properties their schema defines, so the document is
// handed to them through proxies that record which keys were looked up: a
// key of a structured object that the validator never looked at is unknown.
// Objects the validator enumerated (maps: labels, resources.limits) accept any
// key; objects it never looked into at all are free-form
// (x-kubernetes-preserve-unknown-fields) and are not checked further.
//
// Prints one line per document; exits 1 if any document fails, 2 on bad use.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

function usage(msg) {
  console.error(`k8s_validate: ${msg}\nusage: node k8s_validate.mjs --modules DIR FILE.json`);
  process.exit(2);
}

const args = process.argv.slice(2);
let modulesDir = null;
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--modules") modulesDir = args[++i];
  else files.push(args[i]);
}
if (!modulesDir || files.length !== 1) usage("need --modules DIR and one FILE.json");

// apiVersion -> the module exporting its kinds.
function moduleFor(apiVersion) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (!/^[a-z0-9.-]*$/.test(group) || !/^v[0-9a-z]+$/.test(version)) return null;
  if (group === "monitoring.coreos.com") {
    return join(modulesDir, "@kubernetes-models", "prometheus-operator", group, version, "index.js");
  }
  return join(modulesDir, "kubernetes-models", ...(group ? [group] : []), version, "index.js");
}

const moduleCache = new Map();
async function modelClass(apiVersion, kind) {
  const path = moduleFor(String(apiVersion));
  if (!path) return null;
  if (!moduleCache.has(path)) {
    moduleCache.set(path, await import(pathToFileURL(path).href).catch(() => null));
  }
  const mod = moduleCache.get(path);
  const cls = mod && Object.hasOwn(mod, kind) ? mod[kind] : null;
  // Only top-level resources carry apiVersion and kind (not DeploymentSpec).
  return cls && cls.apiVersion === apiVersion && cls.kind === kind ? cls : null;
}

// Wraps `value` (recursively) in proxies that note every key looked up.
function tracked(value, path, nodes) {
  if (value === null || typeof value !== "object") return value;
  const node = { path, value, read: new Set(), enumerated: false, isArray: Array.isArray(value) };
  nodes.push(node);
  const target = node.isArray
    ? value.map((v, i) => tracked(v, `${path}/${i}`, nodes))
    : Object.fromEntries(Object.entries(value).map(([k, v]) => [k, tracked(v, `${path}/${k}`, nodes)]));
  return new Proxy(target, {
    get(t, key, receiver) {
      if (typeof key === "string") node.read.add(key);
      return Reflect.get(t, key, receiver);
    },
    has(t, key) {
      if (typeof key === "string") node.read.add(key);
      return Reflect.has(t, key);
    },
    ownKeys(t) {
      node.enumerated = true;
      return Reflect.ownKeys(t);
    },
    getOwnPropertyDescriptor(t, key) {
      node.enumerated = true;
      return Reflect.getOwnPropertyDescriptor(t, key);
    },
  });
}

function unknownFields(nodes) {
  const out = [];
  for (const n of nodes) {
    if (n.isArray || n.enumerated || n.read.size === 0) continue;
    for (const key of Object.keys(n.value)) {
      if (!n.read.has(key)) out.push(`${n.path || "/"}: unknown field "${key}"`);
    }
  }
  return out;
}

async function validate(doc) {
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) return ["not an object"];
  if (typeof doc.apiVersion !== "string" || typeof doc.kind !== "string") {
    return ["apiVersion and kind must be strings"];
  }
  const cls = await modelClass(doc.apiVersion, doc.kind);
  if (!cls) return [`no schema for apiVersion ${doc.apiVersion}, kind ${doc.kind}`];
  const nodes = [];
  const proxy = tracked(doc, "", nodes);
  try {
    cls.prototype.validate.call(proxy);  // runs the schema's validator on `this`
  } catch (e) {
    // A failed validator may stop early, so unknown fields are not judged.
    return [String(e.message || e)];
  }
  return unknownFields(nodes);
}

const docs = JSON.parse(readFileSync(files[0], "utf8"));
if (!Array.isArray(docs) || docs.length === 0) usage(`${files[0]}: expected a non-empty JSON array`);
let failed = 0;
for (const { name, doc } of docs) {
  const errors = await validate(doc);
  const what = `${doc?.apiVersion}/${doc?.kind} ${doc?.metadata?.name ?? "?"} (${name})`;
  if (errors.length) {
    failed++;
    console.log(`FAIL ${what}`);
    for (const e of errors) console.log(`     ${e}`);
  } else {
    console.log(`ok   ${what}`);
  }
}
console.log(`${docs.length - failed} valid, ${failed} invalid`);
process.exit(failed ? 1 : 0);

// Checks real API responses against docs/openapi.yaml with an independent
// JSON Schema validator (ajv, draft 2020-12, the dialect of OpenAPI 3.1).

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const specFile = path.join(repo, 'docs/openapi.yaml');
export const spec = YAML.parse(fs.readFileSync(specFile, 'utf8'));

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(spec, 'openapi.json');

const templates = Object.keys(spec.paths).map((t) => ({
    template: t,
    re: new RegExp(`^${t.replace(/\{[^}]+\}/g, '[^/]+')}$`),
    literals: t.split('/').filter((s) => !s.startsWith('{')).length,
}));
// literal segments win over parameters ("/v1/conversations/public" over "{cid}")
templates.sort((a, b) => b.literals - a.literals);

const escape = (s) => s.replace(/~/g, '~0').replace(/\//g, '~1');
const compiled = new Map();

function resolve(obj) {
    while (obj && obj.$ref) {
        const pointer = obj.$ref.replace(/^#\//, '').split('/').map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
        obj = pointer.reduce((o, k) => o[k], spec);
    }
    return obj;
}

export function findOperation(method, pathname) {
    const t = templates.find((x) => x.re.test(pathname));
    if (!t) return null;
    const op = spec.paths[t.template][method.toLowerCase()];
    return op ? { template: t.template, op } : null;
}

// Throws when a documented operation answers with an undocumented status or
// a body its schema rejects.  Returns false for undocumented operations.
export function checkResponse(method, url, status, body) {
    const { pathname } = new URL(url);
    const found = findOperation(method, pathname);
    if (!found) return false;
    const m = method.toLowerCase();
    const response = found.op.responses[String(status)];
    if (!response) {
        throw new Error(`${method} ${found.template}: status ${status} is not documented (${JSON.stringify(body)})`);
    }
    const schema = resolve(response)?.content?.['application/json']?.schema;
    if (!schema) return true;
    const key = `${m} ${found.template} ${status}`;
    let validate = compiled.get(key);
    if (!validate) {
        const ref = resolve(found.op.responses[String(status)]) === found.op.responses[String(status)]
            ? `openapi.json#/paths/${escape(found.template)}/${m}/responses/${status}/content/application~1json/schema`
            : `openapi.json#/components/responses/${found.op.responses[String(status)].$ref.split('/').pop()}/content/application~1json/schema`;
        validate = ajv.compile({ $ref: ref });
        compiled.set(key, validate);
    }
    if (!validate(body)) {
        throw new Error(`${method} ${found.template} ${status}: response does not match docs/openapi.yaml: `
            + `${ajv.errorsText(validate.errors)}\n${JSON.stringify(body).slice(0, 2000)}`);
    }
    return true;
}

// docs/openapi.yaml is valid OpenAPI 3.1 by an independent validator, and
// documents every route the module serves.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Validator } from '@seriousme/openapi-schema-validator';
import { spec, specFile, findOperation } from './lib/openapi.mjs';
import { repo } from './lib/harness.mjs';

test('docs/openapi.yaml is a valid OpenAPI 3.1 document', async () => {
    const validator = new Validator();
    const res = await validator.validate(specFile);
    assert.equal(validator.version, '3.1');
    assert.equal(res.valid, true, JSON.stringify(res.errors, null, 2));
    assert.equal(spec.openapi, '3.1.0');
});

const METHODS = { NGX_HTTP_GET: 'GET', NGX_HTTP_POST: 'POST', NGX_HTTP_PUT: 'PUT', NGX_HTTP_PATCH: 'PATCH', NGX_HTTP_DELETE: 'DELETE' };

function moduleRoutes() {
    const dir = path.join(repo, 'ngx_modules');
    const routes = [];
    for (const f of fs.readdirSync(dir).filter((x) => /^ngx_http_parley_api_.*\.c$/.test(x))) {
        const src = fs.readFileSync(path.join(dir, f), 'utf8');
        for (const m of src.matchAll(/\{\s*(NGX_HTTP_[A-Z]+),\s*"(\/v1\/[^"]*)"[^}]*?"([A-Za-z]+)"/g)) {
            routes.push({ method: METHODS[m[1]], pattern: m[2], operationId: m[3], file: f });
        }
    }
    return routes;
}

test('every route served by the module is documented with its operationId', () => {
    const routes = moduleRoutes();
    assert.ok(routes.length >= 9, `found ${routes.length} routes`);
    const missing = [];
    for (const r of routes) {
        const concrete = r.pattern.replace(/\{[^}]+\}/g, 'x');
        const found = findOperation(r.method, concrete);
        if (!found || found.template !== r.pattern || found.op.operationId !== r.operationId) {
            missing.push(`${r.method} ${r.pattern} (${r.operationId}, ${r.file})`);
        }
    }
    assert.deepEqual(missing, [], 'routes missing from docs/openapi.yaml');
});

test('the response checker rejects what the spec does not allow', async () => {
    const { checkResponse } = await import('./lib/openapi.mjs');
    const good = {
        user_id: 'a', name: '', avatar_url: '', metadata: {}, role: 'user', status: 'active',
        created_at: '2026-12-04T01:50:00.123Z', updated_at: '2026-12-04T01:50:00.123Z',
    };
    assert.equal(checkResponse('GET', 'http://h/v1/users/a', 200, good), true);
    assert.throws(() => checkResponse('GET', 'http://h/v1/users/a', 200, { ...good, user_id: 5 }), /does not match/);
    assert.throws(() => checkResponse('GET', 'http://h/v1/users/a', 200, { ...good, extra: 1 }), /does not match/);
    assert.throws(() => checkResponse('GET', 'http://h/v1/users/a', 418, {}), /not documented/);
    assert.throws(() => checkResponse('GET', 'http://h/v1/users/a', 404, { error: { code: 'X', message: 'm' } }), /does not match/);
    assert.equal(checkResponse('GET', 'http://h/v1/users/a', 404,
        { error: { code: 'user_not_found', message: 'm', field: 'uid', retryable: false } }), true);
});

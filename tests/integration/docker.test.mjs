// The compose and Swarm files are valid (docker-compose validates them without
// a Docker engine), and what the Dockerfile copies exists in the repository.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { repo } from './lib/harness.mjs';

for (const file of ['docker/compose.dev.yml', 'docker/stack.yml']) {
    test(`${file} is a valid compose file`, () => {
        const r = spawnSync('docker-compose', ['-f', path.join(repo, file), 'config', '-q'], { encoding: 'utf8' });
        assert.equal(r.status, 0, r.stderr);
    });
}

test('every repository path the Dockerfile copies exists', () => {
    const lines = fs.readFileSync(path.join(repo, 'docker/Dockerfile'), 'utf8').split('\n');
    const copies = lines.filter((l) => /^COPY (?!--from)/.test(l)).map((l) => l.split(/\s+/)[1]);
    assert.ok(copies.length >= 2);
    for (const src of copies) {
        assert.ok(fs.existsSync(path.join(repo, src)), src);
    }
});

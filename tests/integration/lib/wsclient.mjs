// A test client of the WebSocket gateway over the independent `ws` package:
// it records every frame and lets a test wait for the ones it expects.

import WebSocket from 'ws';
import { waitFor } from './harness.mjs';

export async function connect(port, token, { path = '/v1/ws', start = true, resume, deflate = false, protocols, query } = {}) {
    const url = `ws://127.0.0.1:${port}${path}${token !== undefined && !protocols ? `?access_token=${encodeURIComponent(token)}` : ''}${query || ''}`;
    const ws = new WebSocket(url, protocols, { perMessageDeflate: deflate, handshakeTimeout: 5000 });
    const frames = [];
    const c = {
        ws,
        frames,
        closed: null,
        unexpected: null,
        send(obj) { ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)); },
        // the first frame (after `from`) that matches, waiting for it
        async next(match, { timeout = 5000, from = 0 } = {}) {
            const test = typeof match === 'function' ? match : (f) => f.type === match;
            try {
                return await waitFor(`frame ${typeof match === 'string' ? match : 'matching'}`, () => frames.slice(from).find(test), { timeout });
            } catch (e) {
                const last = frames.slice(-6).map((f) => JSON.stringify(f).slice(0, 300)).join('\n  ');
                throw new Error(`${e.message} ${match}; closed=${JSON.stringify(c.closed)}; last frames:\n  ${last}`);
            }
        },
        events(cid) {
            return frames.filter((f) => f.event_seq !== undefined && (cid === undefined || f.conversation_id === cid));
        },
        async op(obj, { timeout = 5000 } = {}) {
            const ref = `r${Math.random().toString(36).slice(2, 10)}`;
            c.send({ ...obj, ref });
            return c.next((f) => f.ref === ref && (f.type === 'ack' || f.type === 'error' || f.type === 'pong'), { timeout });
        },
        async close(code = 1000) {
            if (c.closed) return c.closed;
            ws.close(code);
            return waitFor('close', () => c.closed, { timeout: 5000 });
        },
        async waitClosed(timeout = 5000) { return waitFor('server close', () => c.closed, { timeout }); },
    };
    ws.on('message', (data, isBinary) => {
        frames.push(isBinary ? { binary: data } : JSON.parse(data.toString('utf8')));
    });
    ws.on('close', (code, reason) => { c.closed = { code, reason: reason.toString('utf8') }; });
    ws.on('unexpected-response', (req, res) => {
        let body = '';
        res.on('data', (d) => { body += d; });
        res.on('end', () => { c.unexpected = { status: res.statusCode, body, headers: res.headers }; });
    });
    ws.on('error', () => {});
    await waitFor('open or refusal', () => ws.readyState === WebSocket.OPEN || c.unexpected || c.closed, { timeout: 5000 });
    if (ws.readyState !== WebSocket.OPEN) return c;
    await c.next('hello');
    if (start) {
        c.send(resume ? { op: 'resume', ...resume } : { op: 'start' });
        const r = await c.next((f) => f.type === (resume ? 'resumed' : 'started') || f.type === 'error');
        if (r.type === 'error') throw new Error(`start refused: ${JSON.stringify(r)}`);
        c.startedAt = frames.indexOf(r);
    }
    return c;
}

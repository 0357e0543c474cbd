// Peer for the WebSocket benchmarks (tests/bench/ws_*.sh): node `ws`, one channel.
//
//   node ws_server.mjs PORT [PATH]        (PATH defaults to /ws)
//
// Accepts WebSocket connections on PATH (any query string) and broadcasts every
// text frame a client sends to all other connected clients; an HTTP POST to /pub
// broadcasts its body to all clients and answers 200 with the count. No
// compression (perMessageDeflate off). Listens on 127.0.0.1 only and prints
// "listening PORT" once it does.
import http from 'node:http';
import { WebSocketServer, WebSocket } from 'ws';

const port = Number(process.argv[2] || 0);
const path = process.argv[3] || '/ws';

const server = http.createServer((req, res) => {
    const url = req.url.split('?')[0];
    if (req.method !== 'POST' || url !== '/pub') {
        res.writeHead(404, { 'content-length': 0 });
        res.end();
        return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
        const n = broadcast(Buffer.concat(chunks).toString('utf8'), null);
        const body = `{"delivered":${n}}`;
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
        res.end(body);
    });
});
server.keepAliveTimeout = 60000;
server.maxRequestsPerSocket = 0;
server.requestTimeout = 0;

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: true });

function broadcast(text, except) {
    let n = 0;
    for (const c of wss.clients) {
        if (c !== except && c.readyState === WebSocket.OPEN) {
            c.send(text, { binary: false });
            n++;
        }
    }
    return n;
}

server.on('upgrade', (req, socket, head) => {
    if (req.url.split('?')[0] !== path) {
        socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
        return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
        ws.on('message', (data, isBinary) => {
            if (!isBinary)
                broadcast(data.toString('utf8'), ws);
        });
        ws.on('error', () => {});
    });
});

for (const sig of ['SIGTERM', 'SIGINT'])
    process.on(sig, () => process.exit(0));

server.listen({ port, host: '127.0.0.1', backlog: 4096 }, () => {
    console.log(`listening ${server.address().port}`);
});

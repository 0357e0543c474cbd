#!/usr/bin/python3
"""An independent client of the Parley gateway: python3-websockets (Debian's).

    ws_python_client.py URL CONVERSATION_ID CLIENT_ID [deflate|plain]

Connects, checks the hello, starts, sends a message over the socket (the
text is 2 KB, so that with permessage-deflate the client compresses it),
waits for its ack and for the message.new event of it, then waits for one
more message.new (sent by the test over REST) and prints a JSON summary on
stdout.  Exits non-zero on any surprise.
"""
import asyncio
import json
import sys

import websockets


async def main():
    url, cid, client_id, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    compression = "deflate" if mode == "deflate" else None
    async with websockets.connect(url, compression=compression, max_size=2**20,
                                  open_timeout=5) as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello", hello
        negotiated = ws.extensions[0].name if ws.extensions else None
        await ws.send(json.dumps({"op": "start"}))
        started = json.loads(await ws.recv())
        assert started["type"] == "started", started
        text = "from python " + "y" * 2000
        await ws.send(json.dumps({"op": "message.send", "ref": "p1", "conversation_id": cid,
                                  "body": {"client_id": client_id, "type": "text", "text": text}}))
        ack = None
        echoed = None
        other = None
        print(json.dumps({"ready": True}), flush=True)
        while ack is None or echoed is None or other is None:
            f = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if f.get("type") == "ack" and f.get("ref") == "p1":
                ack = f
            elif f.get("type") == "message.new" and f["payload"]["client_id"] == client_id:
                echoed = f
            elif f.get("type") == "message.new":
                other = f
        await ws.close(1000)
        print(json.dumps({"hello_deflate": hello["deflate"], "negotiated": negotiated,
                          "ack_status": ack["status"], "ack_seq": ack["body"]["seq"],
                          "echo_text_len": len(echoed["payload"]["text"]),
                          "other_text": other["payload"]["text"],
                          "close_code": ws.close_code}), flush=True)


asyncio.run(main())

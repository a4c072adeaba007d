# Counting webhook receiver for the notification throughput figure:
# HTTP/1.1 keep-alive, answers 200, counts events and their lag
# (receive time - eventTime), prints one line per second.
import asyncio, json, sys, time, datetime
count = 0; lag_sum = 0.0; lag_max = 0.0
async def handle(r, w):
    global count, lag_sum, lag_max
    try:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            n = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            body = await r.readexactly(n)
            rec = json.loads(body)["Records"][0]
            t = datetime.datetime.strptime(rec["eventTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()
            lag = time.time() - t
            count += 1; lag_sum += lag; lag_max = max(lag_max, lag)
            w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
async def report():
    global lag_max
    last = 0
    while True:
        await asyncio.sleep(1)
        c = count
        print(f"{time.time():.0f} total={c} rate={c-last}/s mean_lag_ms={1000*lag_sum/max(c,1):.1f} max_lag_ms={1000*lag_max:.1f}", flush=True)
        last = c; lag_max = 0.0
async def main():
    s = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    asyncio.create_task(report())
    async with s:
        await s.serve_forever()
asyncio.run(main())

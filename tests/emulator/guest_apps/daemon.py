"""Leave a daemon behind the way services do: fork, setsid, fork again; the grandchild
sleeps on, detached from the process that started it."""

import os
import time

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        print(f"daemon {os.getpid()}", flush=True)
        time.sleep(300)
        os._exit(0)
    os._exit(0)
os.wait()
print("parent done", flush=True)
time.sleep(300)

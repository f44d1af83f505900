"""An exec function in three phases: read (io), sort (cpu), write (io)."""

import json
import random
import sys

from petri_microtask import microtask

event = json.load(sys.stdin)
microtask("read")
rng = random.Random(event.get("seed", 1))
values = [rng.random() for _ in range(int(event.get("n", 10000)))]
microtask("sort")
values.sort()
microtask("write")
print(json.dumps({"n": len(values), "min": values[0], "max": values[-1]}))

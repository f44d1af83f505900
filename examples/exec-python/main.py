#!/usr/bin/env python3
"""An exec function: reads the event as JSON on stdin, prints the result as JSON."""
import json
import sys

event = json.load(sys.stdin)
words = str(event.get("text", "")).split()
print(f"counting {len(words)} words", file=sys.stderr)
print(json.dumps({"words": len(words), "longest": max(words, key=len) if words else None}))

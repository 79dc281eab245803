"""Drives a gctr node's Redis port with the Python `redis` package (PyPI), as an
application would, and checks every answer; `tests/resp_clients.rs` runs it.

Usage: python3 redis_py_checks.py REDIS_PORT HTTP_ADDR
Exits non-zero (an AssertionError with the reason) at the first wrong answer; the HTTP
API of the same node is the reference for every value.
"""

import json
import sys
import urllib.parse
import urllib.request

import redis

PORT = int(sys.argv[1])
HTTP = sys.argv[2]
I64_MAX = 2**63 - 1

# redis-py 8 asks for RESP3 by default; gctr speaks RESP2 (see the README). Before 5.0
# (Debian 12 ships 4.3) there is no `protocol` option: RESP2 is all it speaks.
try:
    r = redis.Redis(host="127.0.0.1", port=PORT, protocol=2, decode_responses=True)
except TypeError:
    r = redis.Redis(host="127.0.0.1", port=PORT, decode_responses=True)
print(f"redis-py {redis.__version__}")


def http_get(path):
    with urllib.request.urlopen(f"http://{HTTP}{path}", timeout=5) as resp:
        return json.load(resp)


def http_value(name):
    return http_get("/counters/" + urllib.parse.quote(name, safe=""))["value"]


def batches():
    return http_get("/status")["requests"]["batches"]


def refused(call, *words):
    """The ResponseError message `call` raises; fails if it raises nothing."""
    try:
        call()
    except redis.exceptions.ResponseError as e:
        message = str(e)
        for w in words:
            assert w in message, f"{w!r} not in {message!r}"
        return message
    raise AssertionError("no error raised")


# Connection commands.
assert r.ping() is True
assert r.echo("hello world") == "hello world"
assert r.execute_command("SELECT", 0) in (True, "OK")
refused(lambda: r.execute_command("SELECT", 1), "out of range")
assert r.client_setname("checks") is True
assert r.client_getname() == "checks"
assert isinstance(r.client_id(), int)
assert r.execute_command("CLIENT", "SETINFO", "LIB-NAME", "checks") in (True, "OK")
hello = r.execute_command("HELLO", 2)
hello = dict(zip(hello[::2], hello[1::2])) if isinstance(hello, list) else hello
assert hello["proto"] == 2 and hello["server"] == "gctr", hello
refused(lambda: r.execute_command("HELLO", 3), "NOPROTO")
refused(lambda: r.execute_command("AUTH", "secret"), "AUTH is not supported")
assert r.command_count() == len(r.command())
assert {"incr", "incrby", "decr", "decrby", "get", "mget", "exists"} <= set(r.command())
info = r.info()
for key in ("redis_version", "connected_clients", "aof_enabled", "role", "gctr_node"):
    assert key in info, key
assert r.info("persistence")["aof_enabled"] == 1
assert r.config_get("appendonly") == {"appendonly": "yes"}
assert r.config_get("appendfsync") == {"appendfsync": "always"}

# Counter commands, each checked against the HTTP API.
assert r.incr("py") == 1
assert r.incrby("py", 41) == 42
assert r.decr("py") == 41
assert r.decrby("py", 11) == 30
assert r.incrby("py", -5) == 25
assert r.decrby("py", -5) == 30
assert r.incrby("py", 0) == 30
assert r.get("py") == "30"
assert r.get("never written") == "0"
assert r.mget("py", "never written") == ["30", "0"]
assert r.exists("py", "never written", "py") == 2
assert http_value("py") == 30
assert r.incr("café/β") == 1 and http_value("café/β") == 1

# Refused commands apply nothing.
for words in (("SET", "py", "1"), ("DEL", "py"), ("EXPIRE", "py", "10"), ("GETSET", "py", "0"), ("FLUSHALL",)):
    refused(lambda: r.execute_command(*words), f"'{words[0]}'", "PN-counters")
refused(lambda: r.incrby("py", "x"), "not an integer")
refused(lambda: r.incrby("py", "1.5"), "not an integer")
refused(lambda: r.incr("k" * 129), "invalid counter name", "129 bytes")
refused(lambda: r.get("k" * 129), "invalid counter name")
assert r.incrby("big", I64_MAX) == I64_MAX
refused(lambda: r.incr("big"), "overflow")
refused(lambda: r.incrby("big", -(2**63)), "overflow")
assert r.get("big") == str(I64_MAX) and http_value("big") == I64_MAX
assert r.get("py") == "30" and http_value("py") == 30

# A pipeline of 1,000 commands: answered in order, read-your-writes, and committed in
# a handful of batches, not one per command.
before = batches()
pipe = r.pipeline(transaction=False)
for _ in range(1000):
    pipe.incr("pipe")
results = pipe.execute()
assert results == list(range(1, 1001)), results[:5]
spent = batches() - before
assert spent <= 20, f"1,000 pipelined increments took {spent} batches"
print(f"1000 pipelined INCRs: {spent} batch(es)")

pipe = r.pipeline(transaction=False)
for i in range(1000):
    if i % 100 == 99:
        pipe.execute_command("SET", "mixed", "0")
    else:
        pipe.incr("mixed")
    if i % 250 == 0:
        pipe.get("mixed")
results = pipe.execute(raise_on_error=False)
errors = [x for x in results if isinstance(x, redis.exceptions.ResponseError)]
assert len(errors) == 10, errors
assert results[-2] == 990 and r.get("mixed") == "990" and http_value("mixed") == 990
assert results[0] == 1 and results[1] == "1"

# MULTI/EXEC, redis-py's default pipeline: applied together, or not at all.
pipe = r.pipeline()
pipe.incr("tx").incrby("tx", 4).get("tx").decr("tx")
assert pipe.execute() == [1, 5, "5", 4]
pipe = r.pipeline()
pipe.incr("tx").execute_command("SET", "tx", "1").incr("tx")
try:
    pipe.execute()
    raise AssertionError("a transaction with SET was executed")
except redis.exceptions.ExecAbortError:
    pass
except redis.exceptions.ResponseError as e:
    assert "EXECABORT" in str(e) or "PN-counters" in str(e), e
assert r.get("tx") == "4" and http_value("tx") == 4

# Everything read over RESP agrees with the HTTP API.
every = http_get("/counters")["counters"]
names = sorted(every)
assert [int(v) for v in r.mget(names)] == [every[n] for n in names]
print("python redis client: all checks passed")

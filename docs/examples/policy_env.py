"""Choosing a policy from the environment: KEEPALIVE_* variables, as set in a container spec."""

import keepalive

# The variables a Deployment would set (see deploy/kubernetes/); here passed as a mapping instead of os.environ.
environ = {"KEEPALIVE_PATH_TIMEOUT": "350", "KEEPALIVE_COUNT": "3"}
policy = keepalive.Policy.from_env(environ)
print("from the environment:", policy)
assert policy is not None
assert policy.count == 3
assert policy.idle == keepalive.Policy.below(350).idle

# Nothing set: None, and the process default falls back to the checker's finding or BUILTIN_POLICY.
assert keepalive.Policy.from_env({}) is None

# The other way round: the variables that reproduce a policy, e.g. to hand it to a child process.
print("to_env():", keepalive.Policy(idle=45, interval=5, count=4, user_timeout=None).to_env())

# The same syntax the command line takes (keepalive run --policy ...).
assert keepalive.Policy.parse("60,10,5") == keepalive.BUILTIN_POLICY
print("parsed:", keepalive.Policy.parse("idle=30,interval=5,count=3,user_timeout=off"))

# A malformed variable is an error that names it, not a silent fallback.
try:
    keepalive.Policy.from_env({"KEEPALIVE_IDLE": "soon"})
except keepalive.InvalidPolicy as exc:
    print("invalid:", exc)

"""Check this machine against a known middlebox, and act on the findings in code.

``keepalive.check()`` only reads (sysctls and conntrack statistics under /proc); it never raises for what it
finds: unreadable values are reported with the reason.
"""

import keepalive

report = keepalive.check(middleboxes="aws-nat-gateway")  # the NAT gateway in front of this node: 350 s

print(f"path timeout: {report.path_timeout:g} s ({report.path_timeout_origin})")
print(f"policy checked: {report.policy} ({report.policy_origin})")
print(f"recommended:    {report.recommended_policy}")
for finding in report.findings:
    print(f"[{finding.severity}] {finding.code}: {finding.message}")
    if finding.fix:
        print(f"    fix: {finding.fix}")

assert report.path_timeout == 350
assert report.recommended_policy == keepalive.Policy.below(350)
# report.exit_code is what `keepalive check` would exit with: 0 ok, 1 warnings, 2 errors
print("exit code would be", report.exit_code)

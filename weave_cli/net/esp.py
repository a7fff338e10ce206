"""Does this kernel do IPsec ESP with AES-GCM, which encrypted fastdp would need? Proc.

Encrypted fastdp (the original's) is VXLAN inside ESP transport mode with ``rfc4106(gcm(aes))``.
The probe adds such a security association in a network namespace of its own (``unshare -n``),
so nothing of the host's is touched and nothing is left behind: the namespace dies with the
``ip`` process. It answers once per router; the answer is a reason for ``weave status``.
"""

from __future__ import annotations

import shutil
import subprocess

PROBE_KEY = "0x" + "ab" * 36  # 32-byte key + 4-byte salt; a throwaway in a throwaway namespace
PROBE = ["ip", "xfrm", "state", "add", "src", "198.18.0.1", "dst", "198.18.0.2", "proto", "esp",
         "spi", "0x100", "reqid", "1", "mode", "transport", "aead", "rfc4106(gcm(aes))",
         PROBE_KEY, "128"]


def esp_missing() -> str | None:
    """None when the kernel can make an AES-GCM ESP state, else why not (a short phrase)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "cannot probe the kernel for ESP (unshare or ip missing)"
    try:
        proc = subprocess.run(["unshare", "-n", *PROBE], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"cannot probe the kernel for ESP ({err})"
    if proc.returncode == 0:
        return None
    text = proc.stderr.strip().lower()
    if "algorithm not found" in text or "protocol not supported" in text:
        return "kernel has no ESP"
    return f"kernel refused ESP ({proc.stderr.strip()[:80] or proc.returncode})"

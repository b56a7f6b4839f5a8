#!/usr/bin/env python3
"""bench/plan: the memory `qshim plan` reserves for a VM's pod against the pod's real peak (QEMU's
VmHWM plus qshim's) and against KubeVirt's overhead formula, for the shapes of
tests/integration/test_plan.py (all guest RAM preallocated; `web` fills its 12 hotplug ports).
Each shape boots RUNS times; prints min, median and max of the peak, the plan, and KubeVirt's
figure, with their ratios to the median.

KubeVirt's figure (pkg/hypervisor/kvm/launcherhypervisorresources.go, GetMemoryOverhead): guest RAM
+ 220 MiB of fixed overheads + RAM/512 + 8 MiB per vCPU + 8 MiB for an IOThread + 32 MiB of video
RAM (its default has a graphics device).

Usage: bench/plan.py QSHIM_BINARY GUEST_DIR [RUNS]"""
import os
import statistics
import sys
from pathlib import Path

repo = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(repo / "tests" / "integration" / "lib"), str(repo / "tests" / "integration")]

MiB = 1 << 20
UNITS = {"Mi": 1, "Gi": 1024}


def kubevirt_mib(vcpus, memory):
    ram = int(memory[:-2]) * UNITS[memory[-2:]]
    return ram + 220 + ram / 512 + 8 * vcpus + 8 + 32


def main():
    os.environ["QSHIM_BIN"] = str(Path(sys.argv[1]).resolve())
    os.environ["QSHIM_TEST_GUEST"] = str(Path(sys.argv[2]).resolve())
    os.environ.setdefault("QSHIM_SANITIZED", "0")
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    import test_plan  # after the environment it reads is set

    print(f"N={runs} boots per shape; peak = QEMU VmHWM + qshim VmHWM (MiB)")
    print(f"{'shape':8} {'peak min':>9} {'peak med':>9} {'peak max':>9} {'plan':>6} "
          f"{'plan/med':>9} {'KubeVirt':>9} {'KubeVirt/med':>13}")
    for shape in test_plan.SHAPES:
        peaks, planned = [], None
        for _ in range(runs):
            _, planned, measured, _, _ = test_plan.measure(shape)
            peaks.append(measured / MiB)
        med = statistics.median(peaks)
        kv = kubevirt_mib(shape[1], shape[2])
        print(f"{shape[0]:8} {min(peaks):9.1f} {med:9.1f} {max(peaks):9.1f} {planned / MiB:6.0f} "
              f"{planned / MiB / med:9.3f} {kv:9.0f} {kv / med:13.3f}")


if __name__ == "__main__":
    main()

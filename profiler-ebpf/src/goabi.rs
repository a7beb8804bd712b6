//! Go's register-based calling convention (ABIInternal), per architecture: where a probe finds
//! a Go function's integer arguments, its result and the current goroutine. The register
//! numbers are data in `profiler_common::abi` (tested there).

use aya_ebpf::programs::ProbeContext;
use profiler_common::abi::Abi;

#[cfg(bpf_target_arch = "x86_64")]
const ABI: Abi = profiler_common::abi::X86_64;
#[cfg(bpf_target_arch = "aarch64")]
const ABI: Abi = profiler_common::abi::AARCH64;

#[cfg(not(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64")))]
compile_error!("gprof's probes know Go's register ABI on x86_64 and aarch64 only");

/// Saved register `i` (an index from [`ABI`], constant once inlined, as the verifier wants).
#[inline(always)]
fn reg(ctx: &ProbeContext, i: usize) -> u64 {
    if i >= ABI.regs_len {
        return 0;
    }
    // SAFETY: `regs` points at the probed task's saved registers, `regs_len` u64 words, for
    // the whole program run. Volatile, so that the compiler never merges two reads at
    // constant offsets into one at a computed offset (the verifier refuses those on the
    // context).
    unsafe { core::ptr::read_volatile((ctx.regs as *const u64).add(i)) }
}

/// The `n`th integer argument register.
#[inline(always)]
pub fn arg(ctx: &ProbeContext, n: usize) -> u64 {
    if n < ABI.args.len() {
        reg(ctx, ABI.args[n])
    } else {
        0
    }
}

/// The first result register, read at a RET instruction.
#[inline(always)]
pub fn result(ctx: &ProbeContext) -> u64 {
    arg(ctx, 0)
}

/// The register that holds the current g (on the system stack: the M's g0).
#[inline(always)]
pub fn g(ctx: &ProbeContext) -> u64 {
    reg(ctx, ABI.g)
}

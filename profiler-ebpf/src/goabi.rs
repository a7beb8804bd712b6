//! Go's register-based calling convention (ABIInternal), per architecture: where a probe finds
//! a Go function's integer arguments, its result and the current goroutine.
//!
//! amd64: arguments and results in RAX, RBX, RCX, RDI, RSI, R8-R11; the current g in R14.
//! arm64: arguments and results in R0-R15; the current g in R28.

use aya_ebpf::programs::ProbeContext;

/// The `n`th integer argument register (`n` < 5 is all gprof needs).
#[inline(always)]
pub fn arg(ctx: &ProbeContext, n: usize) -> u64 {
    // SAFETY: `regs` points at the probed task's saved registers for the whole program run.
    let regs = unsafe { &*ctx.regs };
    #[cfg(bpf_target_arch = "x86_64")]
    {
        match n {
            0 => regs.rax,
            1 => regs.rbx,
            2 => regs.rcx,
            3 => regs.rdi,
            4 => regs.rsi,
            _ => 0,
        }
    }
    #[cfg(bpf_target_arch = "aarch64")]
    {
        if n < 16 { regs.regs[n] } else { 0 }
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
    // SAFETY: as in `arg`.
    let regs = unsafe { &*ctx.regs };
    #[cfg(bpf_target_arch = "x86_64")]
    {
        regs.r14
    }
    #[cfg(bpf_target_arch = "aarch64")]
    {
        regs.regs[28]
    }
}

#[cfg(not(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64")))]
compile_error!("gprof's probes know Go's register ABI on x86_64 and aarch64 only");

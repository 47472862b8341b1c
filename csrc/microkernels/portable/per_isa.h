// For the sources in this folder: CMake compiles each of them once per ISA path, with that
// path's flags and -DXNOR_ISA_NAMESPACE=<scalar|avx2|avx512>, so that one portable loop gives
// every path its kernel (the compiler vectorises it for the target). Each build's code lives in
// namespace xnor::<isa>, so that the copies, compiled with different flags, never merge at link
// time; XNOR_ISA_KERNELS(DEFINE) expands DEFINE(<isa>) to name the exported kernels <op>_<isa>.
#pragma once

#ifndef XNOR_ISA_NAMESPACE
#error "csrc/microkernels/portable/ sources are compiled per ISA by CMake with -DXNOR_ISA_NAMESPACE=<isa>"
#endif

#define XNOR_ISA_APPLY_(define, isa) define(isa)
#define XNOR_ISA_KERNELS(define) XNOR_ISA_APPLY_(define, XNOR_ISA_NAMESPACE)

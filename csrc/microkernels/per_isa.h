// For code compiled once per ISA path: the sources under portable/ (each built for every ISA)
// and the headers of inline code that several <op>_<isa>.cc files share. CMake compiles those
// with the path's flags and -DXNOR_ISA_NAMESPACE=<scalar|avx2|avx512>; their code lives in
// namespace xnor::<isa> so that copies compiled with different flags never merge at link time
// (an AVX-512 copy of an inline helper must not end up called on the scalar path).
// XNOR_ISA_KERNELS(DEFINE) expands DEFINE(<isa>), which defines the exported <op>_<isa> kernels.
#pragma once

#ifndef XNOR_ISA_NAMESPACE
#error "compiled per ISA only: CMake builds csrc/microkernels' per-ISA sources with -DXNOR_ISA_NAMESPACE=<isa>"
#endif

#define XNOR_ISA_APPLY_(define, isa) define(isa)
#define XNOR_ISA_KERNELS(define) XNOR_ISA_APPLY_(define, XNOR_ISA_NAMESPACE)

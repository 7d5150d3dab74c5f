package batch

import "golang.org/x/sys/cpu"

// useAVX2 says dot4AVX2 may run here.
var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// dot4AVX2 adds to s the dot products of x with a, b, c and d over their
// first n floats; n is a multiple of 16.
//
//go:noescape
func dot4AVX2(x, a, b, c, d *float32, n int, s *[4]float32)

//go:build !amd64

package batch

var useAVX2 = false

func dot4AVX2(x, a, b, c, d *float32, n int, s *[4]float32) { panic("no AVX2") }

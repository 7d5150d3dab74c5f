package batch

import "gonum.org/v1/gonum/blas/gonum"

// The dot products of a selection pass are its whole cost: one pass over
// every vector per pick. dot4 computes four rows' products with x at once,
// so each piece of x is loaded once for four rows; on amd64 with AVX2 and
// FMA it is assembly (eight products per instruction), elsewhere gonum's
// Sdot (SSE assembly on amd64, Go otherwise). Either way a pass is bound by
// memory bandwidth, as numpy's BLAS matrix-vector product is.

// dot4 returns the dot products of x with a, b, c and d, each as long as
// x.
func dot4(x, a, b, c, d []float32) [4]float32 {
	n := len(x)
	a, b, c, d = a[:n], b[:n], c[:n], d[:n]
	var s [4]float32
	done := 0
	if useAVX2 && n >= 16 {
		done = n &^ 15
		dot4AVX2(&x[0], &a[0], &b[0], &c[0], &d[0], done, &s)
	}
	if done < n {
		s[0] += blas.Sdot(n-done, x[done:], 1, a[done:], 1)
		s[1] += blas.Sdot(n-done, x[done:], 1, b[done:], 1)
		s[2] += blas.Sdot(n-done, x[done:], 1, c[done:], 1)
		s[3] += blas.Sdot(n-done, x[done:], 1, d[done:], 1)
	}
	return s
}

// blas is gonum's BLAS, pure Go with assembly kernels.
var blas gonum.Implementation

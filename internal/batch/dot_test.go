package batch

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestDot4: the kernels agree with a float64 sum, at every length around
// the assembly's blocks of sixteen, with and without AVX2.
func TestDot4(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, avx := range []bool{useAVX2, false} {
		saved := useAVX2
		useAVX2 = avx
		for _, n := range []int{1, 7, 15, 16, 17, 31, 32, 33, 100, 1536} {
			rows := make([][]float32, 5)
			for r := range rows {
				rows[r] = make([]float32, n)
				for k := range rows[r] {
					rows[r][k] = float32(rng.NormFloat64())
				}
			}
			got := dot4(rows[0], rows[1], rows[2], rows[3], rows[4])
			for r := range 4 {
				var want float64
				for k := range n {
					want += float64(rows[0][k]) * float64(rows[r+1][k])
				}
				if math.Abs(float64(got[r])-want) > 1e-4*math.Max(1, math.Sqrt(float64(n))) {
					t.Errorf("avx %v n %d row %d: %v; want %v", avx, n, r, got[r], want)
				}
			}
		}
		useAVX2 = saved
	}
	t.Logf("AVX2 and FMA here: %v", useAVX2)
}

func BenchmarkDot4(b *testing.B) {
	v := randomVectors(4, 1536, 1)
	x := randomVectors(1, 1536, 2).Row(0)
	b.SetBytes(4 * 1536 * 4)
	for b.Loop() {
		dot4(x, v.Row(0), v.Row(1), v.Row(2), v.Row(3))
	}
}

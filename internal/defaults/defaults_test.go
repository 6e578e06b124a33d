package defaults

import (
	"testing"
	"time"
)

func TestPositive(t *testing.T) {
	for _, c := range []struct{ in, want time.Duration }{{0, time.Second}, {-1, time.Second}, {time.Millisecond, time.Millisecond}} {
		v := c.in
		Positive(&v, time.Second)
		if v != c.want {
			t.Errorf("Positive(%v) = %v, want %v", c.in, v, c.want)
		}
	}
}

func TestZero(t *testing.T) {
	for _, c := range []struct{ in, want int }{{0, 7}, {-1, -1}, {3, 3}} {
		v := c.in
		Zero(&v, 7)
		if v != c.want {
			t.Errorf("Zero(%d) = %d, want %d", c.in, v, c.want)
		}
	}
	s := ""
	Zero(&s, "x")
	if s != "x" {
		t.Errorf(`Zero("") = %q`, s)
	}
}

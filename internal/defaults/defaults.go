// Package defaults fills the fields of an options struct left unset: one call per field, so
// that a package's withDefaults lists its defaults instead of repeating the same if.
package defaults

// Number is what a field with a positive default may be (time.Duration is an int64).
type Number interface {
	~int | ~int64 | ~uint64 | ~float64
}

// Positive sets *v to def unless *v is positive: zero and negative values mean "the default".
func Positive[T Number](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Zero sets *v to def when *v is its type's zero value (a negative number is kept: it means
// something of its own, such as "no limit").
func Zero[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

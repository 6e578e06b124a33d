package eventlog

import (
	"strings"
	"testing"
)

// TestNameErrorsNameTheCharacter: a refused room or kind is explained with the character as the
// user typed it, not a byte of its UTF-8 encoding.
func TestNameErrorsNameTheCharacter(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{ValidRoom("doc:café"), `"doc:café" has 'é' at byte 7`},
		{ValidRoom("a\xffb"), `has byte 0xff at byte 1`},
		{ValidRoom("a b"), `has ' ' at byte 1`},
		{ValidKind("Big"), `"Big" has 'B' at byte 0`},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("got %v, want it to say %s", tc.err, tc.want)
		}
	}
}

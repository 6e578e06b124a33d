package clientvectors

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestLoadRefusesBadVectors: a vector with an unknown field, a step that says two things or an
// app step that says nothing is refused with the file's name, not played half-understood.
func TestLoadRefusesBadVectors(t *testing.T) {
	for name, body := range map[string]string{
		"unknown-field": `{"about":"x","app":[],"script":[],"expect":{},"extra":1}`,
		"two-things":    `{"about":"x","app":[],"script":[{"send":{"type":"ok"},"drop":true}],"expect":{}}`,
		"empty-step":    `{"about":"x","app":[],"script":[{}],"expect":{}}`,
		"empty-app":     `{"about":"x","app":[{}],"script":[],"expect":{}}`,
		"not-json":      `{"about":`,
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, name+".json"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), name+".json") {
			t.Errorf("%s: %v, want an error naming the file", name, err)
		}
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Error("an empty directory loaded")
	}
}

// TestTheVectorsLoad: the repository's vectors are all well formed.
func TestTheVectorsLoad(t *testing.T) {
	vs, err := Load(filepath.Join("..", "..", Dir))
	if err != nil || len(vs) < 10 {
		t.Fatalf("%d vectors: %v", len(vs), err)
	}
}

func TestMatchAndSubstitute(t *testing.T) {
	named := map[string]map[string]any{"p1": {"key": "K1"}}
	want := substitute(map[string]any{"type": "publish", "key": "$p1.key", "ref": "*", "after": nil}, named).(map[string]any)
	for _, c := range []struct {
		frame    map[string]any
		mismatch bool
	}{
		{map[string]any{"type": "publish", "key": "K1", "ref": "r"}, false},
		{map[string]any{"type": "publish", "key": "K2", "ref": "r"}, true},              // another key
		{map[string]any{"type": "publish", "key": "K1"}, true},                          // ref missing
		{map[string]any{"type": "publish", "key": "K1", "ref": "r", "after": ""}, true}, // after present
	} {
		if got := match(c.frame, want) != ""; got != c.mismatch {
			t.Errorf("match(%v) mismatch %v, want %v", c.frame, got, c.mismatch)
		}
	}
}

// TestMain fails the package when a test leaves a goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

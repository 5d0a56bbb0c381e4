package keys

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"math/big"
	"strings"
	"testing"
)

func TestEncodeBase62(t *testing.T) {
	tests := []struct {
		in    []byte
		width int
		want  string
	}{
		{[]byte{0}, 3, "000"},
		{[]byte{9}, 1, "9"},
		{[]byte{10}, 1, "A"},
		{[]byte{35}, 1, "Z"},
		{[]byte{36}, 1, "a"},
		{[]byte{61}, 1, "z"},
		{[]byte{62}, 2, "10"},
		{[]byte{0xff, 0xff, 0xff, 0xff}, 6, "4gfFC3"}, // 4294967295 = 4*62^5 + ...
	}
	for _, tt := range tests {
		if got := encodeBase62(tt.in, tt.width); got != tt.want {
			t.Errorf("encodeBase62(%v, %d) = %q, want %q", tt.in, tt.width, got, tt.want)
		}
	}
}

// decodeBase62 is the inverse of encodeBase62, written independently for the test.
func decodeBase62(s string) *big.Int {
	n := new(big.Int)
	for _, r := range s {
		n.Mul(n, big.NewInt(62))
		n.Add(n, big.NewInt(int64(strings.IndexRune(alphabet, r))))
	}
	return n
}

func TestEncodeBase62RoundTripsTheLargestBody(t *testing.T) {
	max := bytes.Repeat([]byte{0xff}, bodyBytes)
	got := encodeBase62(max, bodyLength)
	if len(got) != bodyLength {
		t.Fatalf("2^256-1 encodes to %d characters, want %d", len(got), bodyLength)
	}
	if decodeBase62(got).Cmp(new(big.Int).SetBytes(max)) != 0 {
		t.Fatalf("round trip of 2^256-1 failed: %s", got)
	}
}

func TestMintFormat(t *testing.T) {
	// A reader of zeros gives the smallest body: all '0'.
	k, err := MintFrom(bytes.NewReader(make([]byte, 64)))
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("0", bodyLength)
	sum := crc32.ChecksumIEEE([]byte(body))
	wantSum := fmt.Sprintf("%06s", encodeBase62(big.NewInt(int64(sum)).Bytes(), 0))
	if want := Prefix + body + wantSum; k.Value != want {
		t.Fatalf("key = %q, want %q", k.Value, want)
	}
	if k.ID != IDPrefix+strings.Repeat("0", idLength) {
		t.Fatalf("id = %q", k.ID)
	}
}

func TestMintedKeysValidateAndDiffer(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		k, err := Mint()
		if err != nil {
			t.Fatal(err)
		}
		if len(k.Value) != Length {
			t.Fatalf("length %d, want %d", len(k.Value), Length)
		}
		if err := Validate(k.Value); err != nil {
			t.Fatalf("minted key does not validate: %v", err)
		}
		if strings.Contains(k.Value, k.ID[len(IDPrefix):]) {
			t.Fatalf("key ID %s appears inside the key", k.ID)
		}
		if seen[k.Value] || seen[k.ID] {
			t.Fatal("a key or ID repeated")
		}
		seen[k.Value], seen[k.ID] = true, true
	}
}

func TestValidateRejects(t *testing.T) {
	k, err := Mint()
	if err != nil {
		t.Fatal(err)
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	for name, bad := range map[string]string{
		"empty":           "",
		"wrong prefix":    "xyz_" + k.Value[len(Prefix):],
		"short":           k.Value[:Length-1],
		"long":            k.Value + "0",
		"body changed":    flip(k.Value, len(Prefix)+5),
		"checksum change": flip(k.Value, Length-1),
		"bad character":   k.Value[:10] + "-" + k.Value[11:],
	} {
		if Validate(bad) == nil {
			t.Errorf("%s: Validate accepted it", name)
		}
	}
}

func TestMintFailsOnShortRandomness(t *testing.T) {
	if _, err := MintFrom(bytes.NewReader(make([]byte, 3))); err == nil {
		t.Fatal("want an error when randomness runs out")
	}
}

func TestHash(t *testing.T) {
	sum := sha256.Sum256([]byte("kmk_example"))
	if got, want := Hash("kmk_example"), "sha256:"+hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("Hash = %q, want %q", got, want)
	}
}

func TestKeyNeverPrintsItsValue(t *testing.T) {
	k, err := Mint()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k)} {
		if strings.Contains(s, k.Value) {
			t.Fatalf("formatting a Key printed its value")
		}
	}
}

func BenchmarkMint(b *testing.B) {
	for b.Loop() {
		if _, err := Mint(); err != nil {
			b.Fatal(err)
		}
	}
}

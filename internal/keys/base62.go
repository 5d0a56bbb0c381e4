package keys

import (
	"math/big"
	"strings"
)

// alphabet is base62 in the order 0-9, A-Z, a-z. big.Int.Text(62) uses
// 0-9, a-z, A-Z instead, so it cannot be used here.
const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

var sixtyTwo = big.NewInt(62)

// encodeBase62 encodes b as a big-endian number in base62, left-padded with
// '0' to width characters.
func encodeBase62(b []byte, width int) string {
	n := new(big.Int).SetBytes(b)
	digits := make([]byte, 0, width)
	mod := new(big.Int)
	for n.Sign() > 0 {
		n.QuoRem(n, sixtyTwo, mod)
		digits = append(digits, alphabet[mod.Int64()])
	}
	for len(digits) < width {
		digits = append(digits, '0')
	}
	for i, j := 0, len(digits)-1; i < j; i, j = i+1, j-1 {
		digits[i], digits[j] = digits[j], digits[i]
	}
	return string(digits)
}

// isBase62 reports whether s has only characters of the alphabet.
func isBase62(s string) bool {
	for _, r := range s {
		if !strings.ContainsRune(alphabet, r) {
			return false
		}
	}
	return true
}

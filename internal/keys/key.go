// Package keys mints API keys and knows their format.
//
// A key is "kmk_" + body + checksum: the body is 32 random bytes in base62,
// left-padded to 43 characters, and the checksum is the CRC-32 (IEEE) of the
// body in base62, left-padded to 6 characters. A scanner can recognise a key
// by its prefix and validate it offline by its checksum, as with GitHub's
// tokens.
package keys

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

const (
	// Prefix starts every key.
	Prefix = "kmk_"
	// IDPrefix starts every key ID.
	IDPrefix = "kid_"
	// HashPrefix starts every key hash.
	HashPrefix = "sha256:"

	bodyBytes     = 32
	bodyLength    = 43
	checksumWidth = 6
	idBytes       = 9
	idLength      = 13

	// Length is the length of every key.
	Length = len(Prefix) + bodyLength + checksumWidth
)

// ErrMalformed says a string is not a well-formed key.
var ErrMalformed = errors.New("not a keymint key")

// Key is a freshly minted key and its public identifier.
type Key struct {
	// Value is the secret key. It goes into a Secret and nowhere else.
	Value string
	// ID identifies the key in public places. It is drawn independently of
	// Value, so it reveals nothing about it.
	ID string
}

// String hides the key so that it cannot reach a log by accident.
func (k Key) String() string { return "Key{ID: " + k.ID + "}" }

// GoString hides the key from %#v too.
func (k Key) GoString() string { return k.String() }

// Mint draws a new key and key ID from crypto/rand.
func Mint() (Key, error) { return MintFrom(rand.Reader) }

// MintFrom draws a new key and key ID from r.
func MintFrom(r io.Reader) (Key, error) {
	buf := make([]byte, bodyBytes+idBytes)
	if _, err := io.ReadFull(r, buf); err != nil {
		return Key{}, fmt.Errorf("reading randomness: %w", err)
	}
	body := encodeBase62(buf[:bodyBytes], bodyLength)
	return Key{
		Value: Prefix + body + checksum(body),
		ID:    IDPrefix + encodeBase62(buf[bodyBytes:], idLength),
	}, nil
}

// checksum is the base62 CRC-32 of the body.
func checksum(body string) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], crc32.ChecksumIEEE([]byte(body)))
	return encodeBase62(b[:], checksumWidth)
}

// Validate checks a key's prefix, length, alphabet and checksum.
func Validate(key string) error {
	if len(key) != Length || !strings.HasPrefix(key, Prefix) {
		return ErrMalformed
	}
	rest := key[len(Prefix):]
	body, sum := rest[:bodyLength], rest[bodyLength:]
	if !isBase62(rest) || checksum(body) != sum {
		return ErrMalformed
	}
	return nil
}

// Hash is "sha256:" + the lowercase hex SHA-256 of the key.
func Hash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return HashPrefix + hex.EncodeToString(sum[:])
}

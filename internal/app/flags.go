package app

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// days is a duration flag that also takes whole days, such as 14d.
type days struct{ d *time.Duration }

func (f days) String() string {
	if f.d == nil {
		return ""
	}
	if *f.d%(24*time.Hour) == 0 && *f.d > 0 {
		return strconv.Itoa(int(*f.d/(24*time.Hour))) + "d"
	}
	return f.d.String()
}

func (f days) Set(v string) error {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		i, err := strconv.Atoi(n)
		if err != nil || i < 0 {
			return fmt.Errorf("%q is not a number of days", v)
		}
		*f.d = time.Duration(i) * 24 * time.Hour
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return fmt.Errorf("%q is neither a duration (336h) nor days (14d)", v)
	}
	*f.d = d
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

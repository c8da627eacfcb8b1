package kernel

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/pvnfs/pvnfs/pkg/nfsserver/engine"
)

// ParseStats reads the kernel's NFS server statistics (/proc/net/rpc/nfsd, the
// source of nfsstat -s): bytes read and written ("io"), threads ("th"), NFSv4
// COMPOUND requests ("proc4") and operations by number ("proc4ops").
func ParseStats(b []byte) (engine.Stats, error) {
	st := engine.Stats{Requests: map[string]uint64{}, Operations: map[string]uint64{}, Threads: -1, Clients: -1}
	sc := bufio.NewScanner(bytes.NewReader(b))
	seen := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		nums, err := parseUints(f[1:])
		if err != nil {
			// Some lines (the "th" histogram of old kernels) carry decimals; only the
			// ones used below must be whole numbers.
			if f[0] == "io" || f[0] == "proc4" || f[0] == "proc4ops" {
				return engine.Stats{}, fmt.Errorf("nfsd statistics line %q: %w", sc.Text(), err)
			}
		}
		switch f[0] {
		case "io":
			if len(nums) < 2 {
				return engine.Stats{}, fmt.Errorf("nfsd statistics line %q: want read and written bytes", sc.Text())
			}
			st.ReadBytes, st.WrittenBytes = nums[0], nums[1]
			seen = true
		case "th":
			if n, err := strconv.Atoi(f[1]); err == nil {
				st.Threads = n
			}
		case "proc4":
			// proc4 <count> <NULL> <COMPOUND>
			if len(nums) >= 3 {
				st.Requests["4"] = nums[2]
			}
		case "proc4ops":
			// proc4ops <count> <op 0> <op 1> ...
			if len(nums) < 1 || int(nums[0]) != len(nums)-1 {
				return engine.Stats{}, fmt.Errorf("nfsd statistics line %q: count does not match", sc.Text())
			}
			for op, n := range nums[1:] {
				if name := engine.OperationName(op); name != "" {
					st.Operations[name] = n
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return engine.Stats{}, err
	}
	if !seen {
		return engine.Stats{}, fmt.Errorf("nfsd statistics have no io line: is this /proc/net/rpc/nfsd?")
	}
	return st, nil
}

func parseUints(fields []string) ([]uint64, error) {
	out := make([]uint64, 0, len(fields))
	for _, s := range fields {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return out, err
		}
		out = append(out, n)
	}
	return out, nil
}

package engine

import "strings"

// operationNames are the NFSv4 operations by number (RFC 7530, RFC 8881, RFC 7862,
// RFC 8276). Numbers 0 to 2 are unassigned.
var operationNames = [...]string{
	3: "ACCESS", 4: "CLOSE", 5: "COMMIT", 6: "CREATE", 7: "DELEGPURGE", 8: "DELEGRETURN",
	9: "GETATTR", 10: "GETFH", 11: "LINK", 12: "LOCK", 13: "LOCKT", 14: "LOCKU",
	15: "LOOKUP", 16: "LOOKUPP", 17: "NVERIFY", 18: "OPEN", 19: "OPENATTR",
	20: "OPEN_CONFIRM", 21: "OPEN_DOWNGRADE", 22: "PUTFH", 23: "PUTPUBFH",
	24: "PUTROOTFH", 25: "READ", 26: "READDIR", 27: "READLINK", 28: "REMOVE",
	29: "RENAME", 30: "RENEW", 31: "RESTOREFH", 32: "SAVEFH", 33: "SECINFO",
	34: "SETATTR", 35: "SETCLIENTID", 36: "SETCLIENTID_CONFIRM", 37: "VERIFY",
	38: "WRITE", 39: "RELEASE_LOCKOWNER", 40: "BACKCHANNEL_CTL",
	41: "BIND_CONN_TO_SESSION", 42: "EXCHANGE_ID", 43: "CREATE_SESSION",
	44: "DESTROY_SESSION", 45: "FREE_STATEID", 46: "GET_DIR_DELEGATION",
	47: "GETDEVICEINFO", 48: "GETDEVICELIST", 49: "LAYOUTCOMMIT", 50: "LAYOUTGET",
	51: "LAYOUTRETURN", 52: "SECINFO_NO_NAME", 53: "SEQUENCE", 54: "SET_SSV",
	55: "TEST_STATEID", 56: "WANT_DELEGATION", 57: "DESTROY_CLIENTID",
	58: "RECLAIM_COMPLETE", 59: "ALLOCATE", 60: "COPY", 61: "COPY_NOTIFY",
	62: "DEALLOCATE", 63: "IO_ADVISE", 64: "LAYOUTERROR", 65: "LAYOUTSTATS",
	66: "OFFLOAD_CANCEL", 67: "OFFLOAD_STATUS", 68: "READ_PLUS", 69: "SEEK",
	70: "WRITE_SAME", 71: "CLONE", 72: "GETXATTR", 73: "SETXATTR", 74: "LISTXATTR",
	75: "REMOVEXATTR",
}

// OperationName returns the RFC name of NFSv4 operation n, or "" for a number that
// names no operation.
func OperationName(n int) string {
	if n < 0 || n >= len(operationNames) {
		return ""
	}
	return operationNames[n]
}

// NormalizeOperation turns a server's name for an operation ("OP_READ", "read") into
// the RFC name, so that both engines label the same operation alike.
func NormalizeOperation(name string) string {
	return strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(name)), "OP_")
}

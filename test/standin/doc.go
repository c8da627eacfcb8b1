// Package standin is a stand-in for the NFS leg of the node's mounts, FOR TESTS ONLY,
// on machines whose kernel has no NFS client. It turns the NFS mount of
// "<server>:<share>" into a bind mount of the directory <dir>/<server><share> (the
// "export", created on first mount as the real server would have it) and keeps
// everything else real: the bind mounts into pods, read-only remounts, unmounts,
// the mount table, mount namespaces. In the mount table it shows its bind mounts
// as "nfs4" mounts of "<server>:<share>", so the node service cannot tell it from
// NFS.
//
// Fault hooks, all files in <dir> that a test creates or removes (helpers below):
//   - <dir>/<server>.unreachable: the server does not answer. A mount of it blocks
//     in a real helper process (sh with sleep children) until the file is removed
//     or the node's deadline kills the helper's process group; a plain umount of
//     one of its mounts blocks the same way (umount -f and -l do not); statfs of
//     one of its mounts blocks until the file is removed, as on a hard NFS mount.
//   - <dir>/<server>.versions: the NFS versions the server speaks, e.g. "4.1";
//     mounting another version fails with mount.nfs's "Protocol not supported".
//     Without the file it speaks 4.0, 4.1 and 4.2.
//   - MakeStale: the export's directory is replaced by a new one holding the same
//     files, as a server whose export got a new file system ID: existing mounts
//     of it see ESTALE, a new mount sees the files.
//
// It must never be used on a real node, so it is not part of any binary that ships:
// only a pvnfs-csi built with the build tag pvnfs_standin (test/simnode builds it so)
// has the flag --nfs-stand-in-dir that selects it, and test/binaries proves that the
// production build contains neither. It lives under test/ because nothing in pkg/
// may depend on it; the images' Dockerfile copies only cmd/ and pkg/, so a tagged
// build there would not even compile.
package standin

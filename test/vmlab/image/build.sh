#!/usr/bin/env bash
# Builds the VM lab's guest into OUT (test/tools/install.sh vmlab calls it):
#   vmlinux       Debian's kernel, uncompressed, booted through PVH (qemu -kernel);
#                 falls back to vmlinuz when the ELF cannot be extracted
#   initrd.cpio   busybox and the modules that mount the root image, then hand over
#   rootfs.ext4   a Debian root (debootstrap, minbase) with the packages of both
#                 pvnfs images (Dockerfile) and the lab's own tools, and the
#                 kernel's modules: the guest's root and the server pods' image
#   kernel-release, packages   what was built, for the test logs
# Nothing is installed on the host but the lab's host packages: the kernel package
# is downloaded and unpacked, the root filesystem is built in a directory.
#
# Usage: build.sh OUT
set -euo pipefail

out=$1
here=$(cd "$(dirname "$0")" && pwd)
mirror=${VMLAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=${VMLAB_DEBIAN_SUITE:-bookworm}

# Packages of the pvnfs-server image and the pvnfs-csi image (keep in step with the
# Dockerfile), then what the lab itself runs: network namespaces and a
# kube-proxy-like DNAT (iproute2, nftables, conntrack), module loading (kmod), the
# backend filesystem (e2fsprogs), slow backend storage (dmsetup, for dm-delay) and
# ps (procps).
server_image="nfs-kernel-server nfs-ganesha nfs-ganesha-vfs dbus-daemon mount util-linux"
node_image="nfs-common mount util-linux"
lab_tools="iproute2 nftables conntrack kmod e2fsprogs dmsetup procps"
packages=$(printf '%s\n' $server_image $node_image $lab_tools | sort -u | paste -sd, -)

# Modules the initramfs loads to reach the root image and the share; the rest load
# on demand in the guest (modprobe from kmod, against the full tree in the image).
initrd_modules="virtio_pci virtio_blk ext4 overlay 9pnet_virtio 9p crc32c_generic"
# Modules the tests need: each must resolve in the image, or the build fails here
# instead of a test failing later in the guest.
lab_modules="nfsd nfsv4 veth bridge loop dm_delay nft_chain_nat nft_ct nf_conntrack_netlink nft_reject_inet nf_tables overlay ext4"

log() { printf '==> vmlab: %s\n' "$*" >&2; }

work=$(mktemp -d "${out}.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# -- kernel: the package behind linux-image-amd64, unpacked ----------------------
kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$kpkg" ] || { echo "cannot resolve the kernel package behind linux-image-amd64 (apt-get update?)" >&2; exit 1; }
log "download $kpkg"
(cd "$work" && apt-get download -o APT::Sandbox::User=root "$kpkg" >/dev/null)
dpkg-deb -x "$work"/linux-image-*.deb "$work/kx"
kver=$(ls "$work/kx/lib/modules")
depmod -b "$work/kx" "$kver" # the package ships no modules.dep: its postinst makes it

# -- root filesystem -------------------------------------------------------------
log "debootstrap $suite with $packages"
debootstrap --variant=minbase --include="$packages" "$suite" "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -30 "$work/debootstrap.log" >&2; exit 1; }
# Only what a kernel NFS lab loads: filesystems, networking, block, device-mapper
# and virtio drivers. The whole tree is 400 MB, mostly hardware drivers.
mods=lib/modules/$kver
mkdir -p "$work/root/$mods/kernel/drivers"
for d in fs net lib crypto arch; do cp -a "$work/kx/$mods/kernel/$d" "$work/root/$mods/kernel/"; done
for d in block virtio char net md; do cp -a "$work/kx/$mods/kernel/drivers/$d" "$work/root/$mods/kernel/drivers/"; done
rm -rf "$work/root/$mods/kernel/drivers/net/"{wireless,ethernet,usb,can,ieee802154,wwan}
cp "$work/kx/$mods"/modules.{order,builtin,builtin.modinfo} "$work/root/$mods/"
depmod -b "$work/root" "$kver"
for m in $lab_modules; do
  modprobe -d "$work/root" -S "$kver" --show-depends "$m" >/dev/null ||
    { echo "module $m does not resolve in the guest image" >&2; exit 1; }
done
# Trimmed like a slim container image.
rm -rf "$work/root"/usr/share/{doc,man,info,locale}/* "$work/root"/var/cache/apt/archives/*.deb \
  "$work/root"/var/lib/apt/lists/*
# What the Dockerfile adds to the pvnfs-server image, and the lab's mount points.
mkdir -p "$work/root"/{run/pvnfs,var/lib/nfs/rpc_pipefs,share,image}
ln -sf ../proc/self/mounts "$work/root/etc/mtab"
echo lab >"$work/root/etc/hostname"
printf '127.0.0.1 localhost\n' >"$work/root/etc/hosts"
: >"$work/root/etc/fstab"
# No journal: the image is only ever mounted read-only.
size=$(( $(du -sm "$work/root" | cut -f1) * 13 / 10 + 64 ))
log "rootfs.ext4 (${size} MiB)"
mke2fs -q -t ext4 -O ^has_journal -L pvnfs-lab -d "$work/root" "$work/rootfs.ext4" "${size}M"

# -- initramfs -------------------------------------------------------------------
log "initramfs"
r=$work/initrd
mkdir -p "$r"/{bin,sbin,proc,sys,dev,image,rw,newroot}
cp /bin/busybox "$r/bin/busybox"
for a in $("$r/bin/busybox" --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
ln -s ../bin/busybox "$r/sbin/modprobe"
for m in $initrd_modules; do modprobe -d "$work/kx" -S "$kver" --show-depends "$m"; done |
  awk '$1=="insmod"{print $2}' | sort -u | while read -r ko; do
    rel=${ko#"$work/kx/"}; mkdir -p "$r/$(dirname "$rel")"; cp "$ko" "$r/$rel"
  done
cp "$work/kx/$mods"/modules.{order,builtin,builtin.modinfo} "$r/$mods/"
depmod -b "$r" "$kver"
echo "$initrd_modules" >"$r/modules"
cp "$here/init" "$r/init"
chmod +x "$r/init"
(cd "$r" && find . | cpio -o -H newc --quiet) >"$work/initrd.cpio"

# -- vmlinux: the ELF inside the bzImage, for PVH boot (about 3 s to init instead
# of 7-14 s through the BIOS and the in-guest decompression) ----------------------
cp "$work/kx/boot/vmlinuz-$kver" "$work/vmlinuz"
off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$work/vmlinuz" | head -1 | cut -d: -f1 || true)
# xz complains about the bytes after the stream; the ELF check below is what counts.
[ -z "$off" ] || tail -c +$((off + 1)) "$work/vmlinuz" | xz -dc >"$work/vmlinux" 2>/dev/null || true
if [ "$(head -c 4 "$work/vmlinux" 2>/dev/null | od -An -c | tr -d ' ')" = 177ELF ]; then
  rm "$work/vmlinuz"
else
  log "no ELF vmlinux in the bzImage: the lab boots vmlinuz"
  rm -f "$work/vmlinux"
fi

echo "$kver" >"$work/kernel-release"
chroot "$work/root" dpkg-query -W -f='${Package} ${Version}\n' >"$work/packages"
echo "$kpkg $(dpkg-deb -f "$work"/linux-image-*.deb Version)" >>"$work/packages"

mkdir -p "$out"
mv "$work/rootfs.ext4" "$work/initrd.cpio" "$work/kernel-release" "$work/packages" "$out/"
mv "$work"/vmlinu[xz] "$out/"
log "guest ready in $out (kernel $kver)"

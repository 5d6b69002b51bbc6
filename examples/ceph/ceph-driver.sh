# DRIVER_CONFIG_1 of the Ceph example. Sourced for every job before the
# plugin starts: it must set DRIVER_CONFIG (the Ember-CSI backend JSON) and
# may set CSI_SYSTEM_FILES (a tar whose files are placed, relative to /, into
# the plugin container).

ceph_mon_host="192.0.2.10:6789"
ceph_fsid="6f1a4a3c-2a4e-4b8e-9d43-2f6a8c1e5b7d"
ceph_user="cinder"
ceph_pool="volumes"
# Keep in sync with SECRETS in ./config, which masks it in published logs.
ceph_key="AQBk8mxmAAAAABAAr2v0YVdZkW1gYd2QmWJrYg=="

ceph_files=$(mktemp -d)
mkdir -p "$ceph_files/etc/ceph"
cat > "$ceph_files/etc/ceph/ceph.conf" <<CONF
[global]
fsid = $ceph_fsid
mon_host = $ceph_mon_host
rbd default features = 3
CONF
cat > "$ceph_files/etc/ceph/ceph.client.$ceph_user.keyring" <<KEYRING
[client.$ceph_user]
	key = $ceph_key
KEYRING
chmod 600 "$ceph_files/etc/ceph/ceph.client.$ceph_user.keyring"
tar --create --file "$ceph_files/system-files.tar" --directory "$ceph_files" etc/ceph

CSI_SYSTEM_FILES="$ceph_files/system-files.tar"
DRIVER_CONFIG=$(printf '{"name":"ceph","driver":"RBD","rbd_user":"%s","rbd_pool":"%s","rbd_ceph_conf":"/etc/ceph/ceph.conf","rbd_keyring_conf":"/etc/ceph/ceph.client.%s.keyring"}' \
  "$ceph_user" "$ceph_pool" "$ceph_user")

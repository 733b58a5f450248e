module etcd-op.local/echo

go 1.24

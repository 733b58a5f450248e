module etcd-op.local/pause

go 1.24

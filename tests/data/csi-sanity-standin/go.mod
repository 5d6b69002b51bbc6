module example.com/csi-sanity-standin

go 1.19

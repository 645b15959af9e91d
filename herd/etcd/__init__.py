"""etcd for Herd: the members on the master candidates and a small client (DESIGN.md section 4).

``members`` holds the pure decisions (URLs and flags of a node's member, the membership changes
that make etcd's member list equal the candidate pool); ``client`` talks to etcd's JSON gateway.
"""

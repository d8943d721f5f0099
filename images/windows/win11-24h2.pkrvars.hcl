# Windows 11 24H2: UEFI with Secure Boot and a TPM 2.0, as Windows 11 requires.
secure_boot   = true
tpm           = true
disk_size_mib = 65536
memory_mib    = 4096
cpus          = 2

# Windows Server 2025 (Desktop Experience): UEFI, no Secure Boot; a TPM 2.0 as its setup prefers.
secure_boot   = false
tpm           = true
disk_size_mib = 65536
memory_mib    = 4096
cpus          = 2

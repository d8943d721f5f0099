# Windows Server 2022 (Desktop Experience): UEFI, no Secure Boot, no TPM.
secure_boot   = false
tpm           = false
disk_size_mib = 65536
memory_mib    = 4096
cpus          = 2

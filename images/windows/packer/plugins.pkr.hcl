# Packer 1.10+ with the QEMU plugin 1.1+: UEFI firmware files, swtpm (vtpm) and the TPM model are
# plugin options. Install once: packer init images/windows/packer
packer {
  required_version = ">= 1.10.0"
  required_plugins {
    qemu = {
      source  = "github.com/hashicorp/qemu"
      version = ">= 1.1.0"
    }
  }
}

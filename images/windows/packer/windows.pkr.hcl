# One template for every Windows golden image; the version is in its .pkrvars.hcl and its
# autounattend.xml. Setup runs unattended from the TESTBED CD, installs the virtio drivers, the QEMU
# guest agent and the crash settings, and enables WinRM last: Packer connects only once the image is
# otherwise complete, checks it, and generalizes it with sysprep (which shuts it down).

locals {
  # Debian's ovmf package (dpkg -L ovmf): the .ms pair boots with Secure Boot on and Microsoft's keys.
  efi_code = var.secure_boot ? "/usr/share/OVMF/OVMF_CODE_4M.ms.fd" : "/usr/share/OVMF/OVMF_CODE_4M.fd"
  efi_vars = var.secure_boot ? "/usr/share/OVMF/OVMF_VARS_4M.ms.fd" : "/usr/share/OVMF/OVMF_VARS_4M.fd"
  # The Secure Boot firmware keeps its variables in SMM and refuses to start without it.
  secure_boot_args = var.secure_boot ? [["-global", "driver=cfi.pflash01,property=secure,value=on"]] : []
}

source "qemu" "windows" {
  iso_url      = var.iso_url
  iso_checksum = var.iso_checksum

  output_directory = var.output_directory
  vm_name          = "disk.qcow2"
  format           = "qcow2"
  disk_size        = "${var.disk_size_mib}M"
  disk_interface   = "virtio"
  disk_compression = true
  net_device       = "virtio-net"

  accelerator  = "kvm"
  machine_type = var.secure_boot ? "q35,smm=on" : "q35"
  # Hyper-V enlightenments make setup much faster; the test domains get the full set.
  cpu_model = "host,hv_relaxed,hv_vapic,hv_spinlocks=0x1fff,hv_time"
  cpus      = var.cpus
  memory    = var.memory_mib
  qemuargs  = local.secure_boot_args

  efi_boot          = true
  efi_firmware_code = local.efi_code
  efi_firmware_vars = local.efi_vars
  vtpm              = var.tpm
  tpm_device_type   = "tpm-crb"

  # autounattend.xml at the CD's root is found by Windows Setup on its own.
  cd_files = ["${var.config_dir}/*"]
  cd_label = "TESTBED"

  # UEFI asks "Press any key to boot from CD or DVD" for a few seconds.
  boot_wait    = "2s"
  boot_command = ["<spacebar><wait><spacebar><wait><spacebar>"]
  headless     = var.headless

  communicator   = "winrm"
  winrm_username = var.winrm_username
  winrm_password = var.winrm_password
  winrm_use_ssl  = true
  winrm_insecure = true # the image's own self-signed certificate
  winrm_use_ntlm = true
  winrm_timeout  = var.winrm_timeout

  # Generalize: every clone gets a new SID and computer name, and re-runs enable-winrm.ps1 at its
  # first logon (sysprep-unattend.xml), so WinRM is enabled last in every clone too.
  shutdown_command = "C:\\Windows\\System32\\Sysprep\\sysprep.exe /generalize /oobe /shutdown /quiet /unattend:C:\\testbed\\sysprep-unattend.xml"
  shutdown_timeout = "30m"
}

build {
  sources = ["source.qemu.windows"]

  # Fails the build when any crash-detection setting is not what the testbed relies on.
  provisioner "powershell" {
    script = "${path.root}/../scripts/verify-image.ps1"
  }

  post-processor "manifest" {
    output     = "${var.output_directory}/packer-manifest.json"
    strip_path = true
  }
}

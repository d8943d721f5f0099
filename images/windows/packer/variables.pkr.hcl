# Everything that differs between Windows versions or builds. The testbed's image builder
# (orchestrator/images/windows_builder.py) passes them from the image definition and the user's
# --iso/--iso-sha256; nothing here is read from the environment.

variable "iso_url" {
  type        = string
  description = "The Windows installation ISO the user supplies (a local path)."
}

variable "iso_checksum" {
  type        = string
  description = "sha256:<hex> of the ISO; Packer refuses a different file."
}

variable "config_dir" {
  type        = string
  description = "Directory put on the TESTBED CD: autounattend.xml, scripts/, sysprep-unattend.xml, virtio-win/."
}

variable "output_directory" {
  type = string
}

variable "secure_boot" {
  type        = bool
  default     = false
  description = "Secure Boot OVMF with Microsoft's keys enrolled (Windows 11)."
}

variable "tpm" {
  type        = bool
  default     = false
  description = "A TPM 2.0 from swtpm (Windows 11 refuses to install without one)."
}

variable "disk_size_mib" {
  type    = number
  default = 65536
}

variable "memory_mib" {
  type    = number
  default = 4096
}

variable "cpus" {
  type    = number
  default = 2
}

variable "winrm_username" {
  type    = string
  default = "testbed"
}

variable "winrm_password" {
  type      = string
  sensitive = true
}

variable "winrm_timeout" {
  type        = string
  default     = "4h"
  description = "Setup, drivers, the guest agent and the crash settings all come before WinRM answers."
}

variable "headless" {
  type    = bool
  default = true
}

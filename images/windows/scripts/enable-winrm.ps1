# WinRM over HTTPS with NTLM (Negotiate) and a self-signed certificate made in this machine for its
# own name. Run last at image build, and again at the first logon of every clone (its name changed).
$ErrorActionPreference = 'Stop'

# An unidentified network would be "Public", where WinRM refuses to listen.
Get-NetConnectionProfile | Set-NetConnectionProfile -NetworkCategory Private

$certificate = New-SelfSignedCertificate -DnsName $env:COMPUTERNAME -CertStoreLocation 'Cert:\LocalMachine\My' `
    -KeyExportPolicy NonExportable -NotAfter (Get-Date).AddYears(10)

Enable-PSRemoting -SkipNetworkProfileCheck -Force | Out-Null
Get-ChildItem -Path WSMan:\localhost\Listener | Where-Object { $_.Keys -contains 'Transport=HTTP' } |
    Remove-Item -Recurse -Force
Get-ChildItem -Path WSMan:\localhost\Listener | Where-Object { $_.Keys -contains 'Transport=HTTPS' } |
    Remove-Item -Recurse -Force
New-Item -Path WSMan:\localhost\Listener -Transport HTTPS -Address * -CertificateThumbPrint $certificate.Thumbprint `
    -Force | Out-Null

Set-Item -Path WSMan:\localhost\Service\Auth\Basic -Value $false
Set-Item -Path WSMan:\localhost\Service\Auth\Negotiate -Value $true
Set-Item -Path WSMan:\localhost\Service\AllowUnencrypted -Value $false
Set-Item -Path WSMan:\localhost\MaxEnvelopeSizekb -Value 8192
# A local administrator keeps its full token over the network (NTLM with a local account).
Set-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System' `
    -Name LocalAccountTokenFilterPolicy -Type DWord -Value 1

New-NetFirewallRule -Name 'testbed-winrm-https' -DisplayName 'Endpoint testbed: WinRM over HTTPS' `
    -Direction Inbound -Protocol TCP -LocalPort 5986 -Action Allow -Profile Any -ErrorAction SilentlyContinue |
    Out-Null
Set-Service -Name WinRM -StartupType Automatic
Restart-Service -Name WinRM

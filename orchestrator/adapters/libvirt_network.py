"""The guests' network, as libvirt definitions: an isolated network and the filter that contains a guest.

A candidate under test is hostile until proven otherwise. Its guest gets an address by DHCP and
answers the testbed's SSH sessions; it reaches nothing else: no route out (no ``<forward>``), no
DNS (dnsmasq's resolver is off, so the host's resolvers are out of reach too), and a libvirt
nwfilter on its interface that drops every packet but DHCP and the SSH sessions the host opens.
``clean-traffic`` underneath stops it from taking another guest's MAC or IP address.
"""

import ipaddress
from xml.sax.saxutils import quoteattr

from orchestrator.errors import ConfigurationError

GUEST_FILTER = "endpoint-testbed-guest"


def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(cidr)
    except ValueError as exc:
        raise ConfigurationError(f"network_cidr: {exc}") from exc


def host_address(cidr: str) -> str:
    """The host's own address on the guest network: the first one of the range."""
    return str(next(_network(cidr).hosts()))


def network_xml(name: str, bridge: str, cidr: str) -> str:
    """An isolated network: DHCP for guests, a host address to reach them, no route, no DNS."""
    network = _network(cidr)
    hosts = list(network.hosts())
    if len(hosts) < 8:
        raise ConfigurationError(f"network_cidr: {cidr} is too small for guests (at least /28)")
    return f"""<network>
  <name>{name}</name>
  <bridge name='{bridge}' stp='on' delay='0'/>
  <dns enable='no'/>
  <ip address='{hosts[0]}' netmask='{network.netmask}'>
    <dhcp>
      <range start='{hosts[1]}' end='{hosts[-1]}'/>
    </dhcp>
  </ip>
</network>
"""


def network_is_contained(live_xml: str) -> bool:
    """Whether a network already defined on a host has its resolver off (older testbeds left it on)."""
    return "<dns enable='no'/>" in live_xml or '<dns enable="no"/>' in live_xml


def guest_filter_xml(cidr: str) -> str:
    """The nwfilter every testbed guest's interface carries.

    Directions are the guest's view: ``out`` leaves the guest, ``in`` goes to it. Rules with a
    ``state`` are connection-tracked, so the guest can answer an SSH session the host opened but
    cannot open one of its own to anybody.
    """
    host = quoteattr(host_address(cidr))
    return f"""<filter name='{GUEST_FILTER}' chain='root'>
  <filterref filter='clean-traffic'/>
  <rule action='accept' direction='out' priority='100'>
    <udp srcportstart='68' dstportstart='67'/>
  </rule>
  <rule action='accept' direction='in' priority='100'>
    <udp srcportstart='67' dstportstart='68'/>
  </rule>
  <rule action='accept' direction='in' priority='200'>
    <tcp srcipaddr={host} dstportstart='22' state='NEW,ESTABLISHED'/>
  </rule>
  <rule action='accept' direction='out' priority='200'>
    <tcp dstipaddr={host} srcportstart='22' state='ESTABLISHED'/>
  </rule>
  <rule action='drop' direction='inout' priority='1000'>
    <all/>
  </rule>
</filter>
"""
